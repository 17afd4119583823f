// A stand-in for XRT's libxrt_coreutil.so, for testing nsllm.boards.xrt.XrtDevice without a
// board: it exports the XRT C functions XrtDevice calls, with XRT's names and signatures
// (xrt/xrt_device.h, xrt/xrt_kernel.h, xrt/xrt_bo.h), and forwards them to the Verilator
// simulation of the same kernel (the harness library of nsllm/sim/harness/harness.cpp built
// for the top module nsllm_kernel).
//
// What it models, as XRT does on an edge board:
// * an xclbin names its kernel, its arguments (ids, offsets, sizes, kinds: from the build's
//   kernel.xml) and the memory bank of each master (from the build's link.cfg). Our stand-in
//   xclbin is a small text file starting with XRT's magic "xclbin2\0" and holding key=value
//   lines: kernel_xml=, link_cfg=, sim= (the harness library), banks= (the platform's memory
//   tags, in index order), bank_bytes=, latency=;
// * xrtKernelArgGroupId(k, i) is the index of the bank argument i's master is linked to;
// * a buffer object has a host copy and a device copy in its bank's address window:
//   xrtBOWrite/xrtBORead touch the host copy, xrtBOSync moves data between them;
// * xrtRunSetArg keeps argument values (a buffer by its address); xrtRunStart writes them to
//   their registers, then ap_start; xrtRunWaitFor clocks the simulation until ap_done or the
//   timeout (wall clock), returning ERT_CMD_STATE_COMPLETED or ERT_CMD_STATE_TIMEOUT;
// * failures return what XRT returns (NULL or -1) and set errno as XRT does.
//
// Every call is appended to a log that tests read with standin_log().
//
// Environment: NSLLM_XRT_STANDIN_DEVICES (default 1) is the number of devices.

#include <dlfcn.h>

#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

extern "C" {
typedef void* xrtDeviceHandle;
typedef void* xrtKernelHandle;
typedef void* xrtRunHandle;
typedef void* xrtBufferHandle;
typedef uint64_t xrtBufferFlags;
typedef uint32_t xrtMemoryGroup;
typedef unsigned char xuid_t[16];
}

namespace {

enum State { NEW = 1, RUNNING = 3, COMPLETED = 4, ERROR = 5, TIMEOUT = 8 };

// The harness library's C API (nsllm/sim/harness/harness.cpp).
struct SimApi {
  void* (*create)(uint64_t, unsigned, double, uint64_t, unsigned);
  void (*destroy)(void*);
  int (*mem_write)(void*, uint64_t, const uint8_t*, uint64_t);
  int (*mem_read)(void*, uint64_t, uint8_t*, uint64_t);
  int (*reg_write)(void*, uint32_t, uint32_t);
  int (*reg_read)(void*, uint32_t, uint32_t*);
  void (*clear_done)(void*);
  int (*run_until_done)(void*, uint64_t, uint64_t, uint64_t*);
  int (*error)(void*, char*, int);
};

struct Arg {
  int id = -1;
  std::string name, port;
  bool pointer = false;
  uint32_t offset = 0, size = 0;
};

struct Device;

struct Bo {
  Device* dev;
  uint64_t addr, size;
  int bank;
  std::vector<uint8_t> host;
};

struct Kernel {
  Device* dev;
};

struct Run {
  Kernel* kernel;
  std::map<int, uint64_t> values;
  int state = NEW;
};

struct Device {
  unsigned index = 0;
  bool loaded = false;
  std::string kernel_name;
  std::vector<Arg> args;
  std::map<std::string, std::string> link;  // master -> bank tag
  std::vector<std::string> banks;
  uint64_t bank_bytes = 1 << 24;
  std::vector<uint64_t> next;  // per bank: next free address
  unsigned char uuid[16] = {};
  void* dl = nullptr;
  SimApi sim{};
  void* s = nullptr;
  bool kernel_open = false;
};

std::string g_log;

void logf(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  g_log += buf;
  g_log += "\n";
}

std::string attr(const std::string& element, const std::string& name) {
  std::string key = " " + name + "=\"";
  size_t at = element.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  return element.substr(at, element.find('"', at) - at);
}

bool parse_kernel_xml(const std::string& path, Device* d) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string xml = ss.str();
  size_t k = xml.find("<kernel ");
  if (k == std::string::npos) return false;
  d->kernel_name = attr(xml.substr(k, xml.find('>', k) - k), "name");
  for (size_t at = xml.find("<arg "); at != std::string::npos; at = xml.find("<arg ", at + 1)) {
    std::string e = xml.substr(at, xml.find("/>", at) - at);
    Arg a;
    a.id = std::stoi(attr(e, "id"));
    a.name = attr(e, "name");
    a.port = attr(e, "port");
    a.pointer = attr(e, "addressQualifier") == "1";
    a.offset = uint32_t(std::stoul(attr(e, "offset"), nullptr, 0));
    a.size = uint32_t(std::stoul(attr(e, "size"), nullptr, 0));
    d->args.push_back(a);
  }
  return !d->kernel_name.empty() && !d->args.empty();
}

bool parse_link_cfg(const std::string& path, Device* d) {
  std::ifstream in(path);
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("sp=", 0) != 0) continue;
    // sp=<cu>.<master>:<tag>
    size_t dot = line.find('.'), colon = line.rfind(':');
    if (dot == std::string::npos || colon == std::string::npos) return false;
    d->link[line.substr(dot + 1, colon - dot - 1)] = line.substr(colon + 1);
  }
  return !d->link.empty();
}

const Arg* find_arg(Device* d, int id) {
  for (const Arg& a : d->args)
    if (a.id == id) return &a;
  return nullptr;
}

int bank_of(Device* d, const Arg& a) {
  auto it = d->link.find(a.port);
  if (it == d->link.end()) return -1;
  for (size_t i = 0; i < d->banks.size(); i++)
    if (d->banks[i] == it->second) return int(i);
  return -1;
}

template <class F>
bool bind(void* dl, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(dl, name));
  return fn != nullptr;
}

int fail(int code) {
  errno = code;
  return -1;
}

}  // namespace

extern "C" {

// ---- test access
int standin_log(char* buf, int size) {
  int n = int(g_log.size());
  if (size > 0) {
    int k = n < size - 1 ? n : size - 1;
    std::memcpy(buf, g_log.data(), k);
    buf[k] = 0;
  }
  return n;
}

void standin_clear_log(void) { g_log.clear(); }

// ---- xrt_device.h
xrtDeviceHandle xrtDeviceOpen(unsigned int index) {
  const char* env = std::getenv("NSLLM_XRT_STANDIN_DEVICES");
  unsigned count = env ? unsigned(std::atoi(env)) : 1;
  logf("xrtDeviceOpen %u", index);
  if (index >= count) {
    errno = ENODEV;
    return nullptr;
  }
  Device* d = new Device;
  d->index = index;
  return d;
}

int xrtDeviceClose(xrtDeviceHandle dh) {
  Device* d = static_cast<Device*>(dh);
  if (!d) return fail(EINVAL);
  if (d->s) d->sim.destroy(d->s);
  if (d->dl) dlclose(d->dl);
  delete d;
  logf("xrtDeviceClose");
  return 0;
}

int xrtDeviceLoadXclbinFile(xrtDeviceHandle dh, const char* fnm) {
  Device* d = static_cast<Device*>(dh);
  logf("xrtDeviceLoadXclbinFile %s", fnm ? fnm : "(null)");
  if (!d || !fnm) return fail(EINVAL);
  std::ifstream in(fnm, std::ios::binary);
  if (!in) return fail(ENOENT);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() < 8 || std::memcmp(text.data(), "xclbin2\0", 8) != 0) return fail(EINVAL);
  std::map<std::string, std::string> kv;
  std::istringstream lines(text.substr(8));
  std::string line;
  while (std::getline(lines, line)) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  if (!parse_kernel_xml(kv["kernel_xml"], d) || !parse_link_cfg(kv["link_cfg"], d))
    return fail(EINVAL);
  std::istringstream tags(kv["banks"]);
  std::string tag;
  while (std::getline(tags, tag, ',')) d->banks.push_back(tag);
  if (d->banks.empty()) return fail(EINVAL);
  if (!kv["bank_bytes"].empty()) d->bank_bytes = std::stoull(kv["bank_bytes"], nullptr, 0);
  unsigned latency = kv["latency"].empty() ? 0 : unsigned(std::stoul(kv["latency"]));
  d->dl = dlopen(kv["sim"].c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!d->dl) {
    logf("dlopen: %s", dlerror());
    return fail(ENOEXEC);
  }
  SimApi& a = d->sim;
  if (!bind(d->dl, "sim_create", a.create) || !bind(d->dl, "sim_destroy", a.destroy) ||
      !bind(d->dl, "sim_mem_write", a.mem_write) || !bind(d->dl, "sim_mem_read", a.mem_read) ||
      !bind(d->dl, "sim_reg_write", a.reg_write) || !bind(d->dl, "sim_reg_read", a.reg_read) ||
      !bind(d->dl, "sim_clear_done", a.clear_done) ||
      !bind(d->dl, "sim_run_until_done", a.run_until_done) || !bind(d->dl, "sim_error", a.error))
    return fail(ENOEXEC);
  d->s = a.create(d->bank_bytes * d->banks.size(), latency, 0.0, 1, 8);
  for (size_t b = 0; b < d->banks.size(); b++) d->next.push_back(b * d->bank_bytes + 0x1000);
  for (size_t i = 0; i < text.size(); i++) d->uuid[i % 16] ^= uint8_t(text[i] + i);
  d->loaded = true;
  return 0;
}

int xrtDeviceGetXclbinUUID(xrtDeviceHandle dh, xuid_t out) {
  Device* d = static_cast<Device*>(dh);
  if (!d || !d->loaded) return fail(EINVAL);
  std::memcpy(out, d->uuid, 16);
  return 0;
}

// ---- xrt_kernel.h
xrtKernelHandle xrtPLKernelOpenExclusive(xrtDeviceHandle dh, const xuid_t uuid, const char* name) {
  Device* d = static_cast<Device*>(dh);
  logf("xrtPLKernelOpenExclusive %s", name ? name : "(null)");
  if (!d || !d->loaded || std::memcmp(uuid, d->uuid, 16) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  if (!name || d->kernel_name != name) {
    errno = ENOENT;
    return nullptr;
  }
  if (d->kernel_open) {
    errno = EBUSY;
    return nullptr;
  }
  d->kernel_open = true;
  return new Kernel{d};
}

int xrtKernelClose(xrtKernelHandle kh) {
  Kernel* k = static_cast<Kernel*>(kh);
  if (!k) return fail(EINVAL);
  k->dev->kernel_open = false;
  delete k;
  return 0;
}

int xrtKernelArgGroupId(xrtKernelHandle kh, int argno) {
  Kernel* k = static_cast<Kernel*>(kh);
  const Arg* a = k ? find_arg(k->dev, argno) : nullptr;
  int bank = a && a->pointer ? bank_of(k->dev, *a) : -1;
  logf("xrtKernelArgGroupId %d -> %d", argno, bank);
  return bank < 0 ? fail(EINVAL) : bank;
}

uint32_t xrtKernelArgOffset(xrtKernelHandle kh, int argno) {
  Kernel* k = static_cast<Kernel*>(kh);
  const Arg* a = k ? find_arg(k->dev, argno) : nullptr;
  if (!a) {
    errno = EINVAL;
    return 0xFFFFFFFFu;
  }
  return a->offset;
}

int xrtKernelReadRegister(xrtKernelHandle kh, uint32_t offset, uint32_t* datap) {
  Kernel* k = static_cast<Kernel*>(kh);
  if (!k || !datap || offset + 4 > 0x1000) return -1;  // XRT: std::out_of_range, no errno
  return k->dev->sim.reg_read(k->dev->s, offset, datap) == 0 ? 0 : fail(EIO);
}

int xrtKernelWriteRegister(xrtKernelHandle kh, uint32_t offset, uint32_t data) {
  Kernel* k = static_cast<Kernel*>(kh);
  if (!k || offset + 4 > 0x1000) return -1;
  logf("xrtKernelWriteRegister 0x%x 0x%x", offset, data);
  return k->dev->sim.reg_write(k->dev->s, offset, data) == 0 ? 0 : fail(EIO);
}

xrtRunHandle xrtRunOpen(xrtKernelHandle kh) {
  Kernel* k = static_cast<Kernel*>(kh);
  if (!k) {
    errno = EINVAL;
    return nullptr;
  }
  return new Run{k};
}

int xrtRunSetArg(xrtRunHandle rh, int index, ...) {
  Run* r = static_cast<Run*>(rh);
  const Arg* a = r ? find_arg(r->kernel->dev, index) : nullptr;
  if (!a) return fail(EINVAL);
  va_list ap;
  va_start(ap, index);
  uint64_t value;
  if (a->pointer) {
    Bo* bo = static_cast<Bo*>(va_arg(ap, void*));
    value = bo ? bo->addr : 0;
    logf("xrtRunSetArg %d %s bo@0x%llx bank %d", index, a->name.c_str(),
         (unsigned long long)value, bo ? bo->bank : -1);
  } else {
    value = va_arg(ap, unsigned int);
    logf("xrtRunSetArg %d %s %llu", index, a->name.c_str(), (unsigned long long)value);
  }
  va_end(ap);
  r->values[index] = value;
  return 0;
}

int xrtRunStart(xrtRunHandle rh) {
  Run* r = static_cast<Run*>(rh);
  if (!r) return fail(EINVAL);
  if (r->state == RUNNING) return fail(EBUSY);
  Device* d = r->kernel->dev;
  for (auto& [id, value] : r->values) {
    const Arg* a = find_arg(d, id);
    if (d->sim.reg_write(d->s, a->offset, uint32_t(value)) != 0) return fail(EIO);
    if (a->size == 8 && d->sim.reg_write(d->s, a->offset + 4, uint32_t(value >> 32)) != 0)
      return fail(EIO);
  }
  d->sim.clear_done(d->s);
  if (d->sim.reg_write(d->s, 0x00, 1) != 0) return fail(EIO);
  r->state = RUNNING;
  logf("xrtRunStart");
  return 0;
}

int xrtRunWaitFor(xrtRunHandle rh, unsigned int timeout_ms) {
  Run* r = static_cast<Run*>(rh);
  if (!r) return ERROR;
  if (r->state != RUNNING) return r->state;
  Device* d = r->kernel->dev;
  auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    uint64_t ran = 0;
    int done = d->sim.run_until_done(d->s, 1 << 14, 32, &ran);
    char err[256];
    if (done < 0 || d->sim.error(d->s, err, sizeof err) > 0) {
      r->state = ERROR;
      break;
    }
    if (done == 1) {
      r->state = COMPLETED;
      break;
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0).count();
    if (timeout_ms && ms >= timeout_ms) {
      logf("xrtRunWaitFor timeout after %u ms", timeout_ms);
      return TIMEOUT;
    }
  }
  logf("xrtRunWaitFor %d", r->state);
  return r->state;
}

int xrtRunState(xrtRunHandle rh) {
  Run* r = static_cast<Run*>(rh);
  return r ? r->state : ERROR;
}

int xrtRunClose(xrtRunHandle rh) {
  delete static_cast<Run*>(rh);
  return 0;
}

// ---- xrt_bo.h
xrtBufferHandle xrtBOAlloc(xrtDeviceHandle dh, size_t size, xrtBufferFlags flags,
                           xrtMemoryGroup grp) {
  Device* d = static_cast<Device*>(dh);
  unsigned bank = grp & 0xFFFF;
  if (!d || !d->loaded || bank >= d->banks.size() || flags != 0) {
    errno = EINVAL;
    return nullptr;
  }
  uint64_t addr = (d->next[bank] + 0xFFF) & ~uint64_t(0xFFF);
  if (addr + size > (bank + 1) * d->bank_bytes) {
    errno = ENOMEM;
    return nullptr;
  }
  d->next[bank] = addr + size;
  logf("xrtBOAlloc %zu bank %u (%s) -> 0x%llx", size, bank, d->banks[bank].c_str(),
       (unsigned long long)addr);
  return new Bo{d, addr, size, int(bank), std::vector<uint8_t>(size)};
}

int xrtBOFree(xrtBufferHandle bh) {
  delete static_cast<Bo*>(bh);
  return 0;
}

uint64_t xrtBOAddress(xrtBufferHandle bh) { return bh ? static_cast<Bo*>(bh)->addr : 0; }

int xrtBOWrite(xrtBufferHandle bh, const void* src, size_t size, size_t seek) {
  Bo* b = static_cast<Bo*>(bh);
  if (!b || seek + size > b->size) return fail(EINVAL);
  std::memcpy(b->host.data() + seek, src, size);
  return 0;
}

int xrtBORead(xrtBufferHandle bh, void* dst, size_t size, size_t skip) {
  Bo* b = static_cast<Bo*>(bh);
  if (!b || skip + size > b->size) return fail(EINVAL);
  std::memcpy(dst, b->host.data() + skip, size);
  return 0;
}

int xrtBOSync(xrtBufferHandle bh, int dir, size_t size, size_t offset) {
  Bo* b = static_cast<Bo*>(bh);
  if (!b || offset + size > b->size) return fail(EINVAL);
  Device* d = b->dev;
  logf("xrtBOSync %s 0x%llx +%zu", dir == 0 ? "to_device" : "from_device",
       (unsigned long long)(b->addr + offset), size);
  int ok = dir == 0 ? d->sim.mem_write(d->s, b->addr + offset, b->host.data() + offset, size)
                    : d->sim.mem_read(d->s, b->addr + offset, b->host.data() + offset, size);
  return ok == 0 ? 0 : fail(EIO);
}

}  // extern "C"
