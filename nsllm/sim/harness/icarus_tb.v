// Icarus Verilog testbench around the NSLLM core (top module `nsllm_core`, ports in
// docs/runtime.md): the Icarus twin of harness.cpp, driven by nsllm/sim/icarus_device.py.
//
// Like the C++ harness it owns the clock, a DRAM model serving the core's AXI4 read master and
// an AXI4-Lite master for the registers, so the host talks to it only per register access or
// per run. It reads one command per line on stdin and answers one line starting with "=" on
// stdout (flushed), because Icarus has no ctypes-style entry points without VPI:
//
//   W word n        load words [word, word+n) from the transfer file ($readmemh)  -> =OK
//   R word n        dump words [word, word+n) to the transfer file ($writememh)   -> =OK
//   RW offset value AXI4-Lite write                     -> =B resp     (-1: no answer)
//   RR offset       AXI4-Lite read                      -> =D resp value
//   RUN max poll    run until ap_done (see run_until_done) -> =RUN result cycles_ran
//   STEP n          clock n cycles                      -> =OK
//   CLR             forget an ap_done already seen      -> =OK
//   CYC             cycles since reset                  -> =C cycles
//   CNT             memory counters                     -> =N served bursts stalls slverr pending
//   ERR             first protocol slip, or nothing     -> =E text
//   QUIT            end the simulation (flushes the VCD)
// Numbers are hexadecimal in commands and decimal in answers. Bulk DRAM goes through a file
// because $readmemh parses ~10^6 words/s while a Verilog loop over $fscanf is far slower.
//
// Per cycle (step): drive our outputs, let the core settle (#1), sample the handshakes as the
// rising edge will see them, clock the edge, then advance our state by what fired; our ready
// signals never depend on the core's valids. DRAM: AR requests are queued in order (up to
// +outstanding; arready drops when full); a burst's first beat may come +latency cycles after
// its AR is taken; beats are returned in order with seeded random rvalid gaps (+stall is the
// gap probability times 2^24, drawn from xorshift64*); every beat carries the bus-aligned word
// holding its address; beyond +mem_bytes the answer is SLVERR and zeros. Protocol slips (not
// INCR, a burst crossing 4 KiB, arsize wider than the bus, an AR withdrawn or changed before
// arready) are recorded for ERR with the C++ harness's wording.
//
// Compile-time parameters: PORT_BYTES (width of m_axi__rdata) and MEM_WORDS (size of the DRAM
// array in PORT_BYTES words, at least +mem_bytes; Python rounds it up to a power of two so
// that a few array sizes cover all devices).

module icarus_tb;
  parameter integer PORT_BYTES = 8;
  parameter integer MEM_WORDS = 1 << 16;
  localparam integer LG = $clog2(PORT_BYTES);
  localparam integer QUEUE = 256;      // most bursts the DRAM model can hold (+outstanding cap)
  localparam integer LITE_LIMIT = 1000;  // cycles an AXI4-Lite access may take
  localparam [31:0] STDIN = 32'h8000_0000;

  // ---- the core and its ports
  reg clk = 0, rst = 1;
  reg [11:0] s_awaddr = 0, s_araddr = 0;
  reg [31:0] s_wdata = 0;
  reg [3:0] s_wstrb = 0;
  reg s_awvalid = 0, s_wvalid = 0, s_bready = 0, s_arvalid = 0, s_rready = 0;
  wire s_awready, s_wready, s_bvalid, s_arready, s_rvalid;
  wire [1:0] s_bresp, s_rresp;
  wire [31:0] s_rdata;
  reg m_arready = 0, m_rvalid = 0, m_rlast = 0;
  reg [0:0] m_rid = 0;
  reg [1:0] m_rresp = 0;
  reg [8*PORT_BYTES-1:0] m_rdata = 0;
  wire [0:0] m_arid;
  wire [63:0] m_araddr;
  wire [7:0] m_arlen;
  wire [2:0] m_arsize;
  wire [1:0] m_arburst;
  wire m_arvalid, m_rready, irq;

  nsllm_core dut (
    .clk(clk), .rst(rst), .irq(irq),
    .s_axil__awaddr(s_awaddr), .s_axil__awvalid(s_awvalid), .s_axil__awready(s_awready),
    .s_axil__wdata(s_wdata), .s_axil__wstrb(s_wstrb), .s_axil__wvalid(s_wvalid),
    .s_axil__wready(s_wready), .s_axil__bresp(s_bresp), .s_axil__bvalid(s_bvalid),
    .s_axil__bready(s_bready), .s_axil__araddr(s_araddr), .s_axil__arvalid(s_arvalid),
    .s_axil__arready(s_arready), .s_axil__rdata(s_rdata), .s_axil__rresp(s_rresp),
    .s_axil__rvalid(s_rvalid), .s_axil__rready(s_rready),
    .m_axi__arid(m_arid), .m_axi__araddr(m_araddr), .m_axi__arlen(m_arlen),
    .m_axi__arsize(m_arsize), .m_axi__arburst(m_arburst), .m_axi__arvalid(m_arvalid),
    .m_axi__arready(m_arready), .m_axi__rid(m_rid), .m_axi__rdata(m_rdata),
    .m_axi__rresp(m_rresp), .m_axi__rlast(m_rlast), .m_axi__rvalid(m_rvalid),
    .m_axi__rready(m_rready)
  );

  // ---- DRAM: 2-state, so words never written read as zeros (like the C++ harness's vector)
  bit [8*PORT_BYTES-1:0] mem [0:MEM_WORDS-1];
  reg [63:0] mem_bytes;
  reg [63:0] latency;
  reg [31:0] stall_threshold;  // rvalid gap when the 24-bit random draw is below it
  reg [31:0] max_outstanding;
  reg [63:0] rng;

  reg [63:0] q_addr [0:QUEUE-1];  // address of the burst's current beat
  reg [31:0] q_beats [0:QUEUE-1];  // beats still to send
  reg [31:0] q_size [0:QUEUE-1];  // bytes per beat
  reg [63:0] q_ready_at [0:QUEUE-1];  // first cycle its next beat may be presented
  reg [0:0] q_id [0:QUEUE-1];
  integer q_head = 0, q_tail = 0, q_count = 0;
  reg r_presenting = 0;
  reg ar_waiting = 0;
  reg [63:0] waiting_addr = 0;
  reg [7:0] waiting_len = 0;
  reg [63:0] cycles = 0, bytes_served = 0, bursts_taken = 0, stall_cycles = 0, slverr_beats = 0;
  reg [8*256-1:0] error_text = 0;
  reg has_error = 0;
  reg done_seen = 0;

  // what step() sampled before the edge, for the AXI4-Lite tasks
  reg lite_aw_fire, lite_w_fire, lite_ar_fire, lite_bvalid, lite_rvalid;
  reg [1:0] lite_bresp, lite_rresp;
  reg [31:0] lite_rdata;

  task note(input [8*256-1:0] what);
    if (!has_error) begin
      error_text = what;
      has_error = 1;
    end
  endtask

  // 24 uniform bits (xorshift64*: the high bits of the product are the good ones)
  function [23:0] draw24(input dummy);
    reg [63:0] product;
    begin
      rng = rng ^ (rng >> 12);
      rng = rng ^ (rng << 25);
      rng = rng ^ (rng >> 27);
      product = rng * 64'h2545F4914F6CDD1D;
      draw24 = product[63:40];
    end
  endfunction

  function word_ok(input [63:0] base);
    word_ok = base + PORT_BYTES <= mem_bytes && base + PORT_BYTES > base;
  endfunction

  // Present the next beat (rvalid, rdata, rresp, rlast) or a gap.
  task drive_r;
    reg [63:0] base;
    begin
      if (!r_presenting && q_count != 0 && cycles >= q_ready_at[q_head]) begin
        if (stall_threshold == 0 || draw24(0) >= stall_threshold) r_presenting = 1;
        else stall_cycles = stall_cycles + 1;
      end
      m_rvalid = r_presenting;
      if (r_presenting) begin
        base = q_addr[q_head] & ~(PORT_BYTES - 1);
        m_rdata = word_ok(base) ? mem[base >> LG] : 0;
        m_rresp = word_ok(base) ? 2'd0 : 2'd2;
        m_rlast = q_beats[q_head] == 1;
        m_rid = q_id[q_head];
      end else begin
        m_rlast = 0;
        m_rresp = 0;
      end
    end
  endtask

  // Check and queue the AR request the edge is taking (fields read while still valid).
  task take_ar;
    reg [63:0] first;
    reg [31:0] beats, size;
    reg [8*256-1:0] text;
    begin
      beats = m_arlen + 1;
      size = 1 << m_arsize;
      if (m_arburst != 1) begin
        $sformat(text, "m_axi: arburst %0d at araddr %0d (only INCR=1)", m_arburst, m_araddr);
        note(text);
      end
      if (size > PORT_BYTES) begin
        $sformat(text, "m_axi: arsize %0d is wider than the bus", m_arsize);
        note(text);
      end
      first = m_araddr & ~(size - 1);
      if ((first >> 12) != ((first + beats * size - 1) >> 12)) begin
        $sformat(text, "m_axi: burst at araddr %0d of %0d beats crosses a 4 KiB boundary",
                 m_araddr, beats);
        note(text);
      end
      q_addr[q_tail] = m_araddr;
      q_beats[q_tail] = beats;
      q_size[q_tail] = size;
      q_ready_at[q_tail] = cycles + 1 + latency;  // counted from the cycle after the edge
      q_id[q_tail] = m_arid;
      q_tail = (q_tail + 1) % QUEUE;
      q_count = q_count + 1;
      bursts_taken = bursts_taken + 1;
    end
  endtask

  task take_r;
    reg [63:0] base;
    begin
      base = q_addr[q_head] & ~(PORT_BYTES - 1);
      if (!word_ok(base)) slverr_beats = slverr_beats + 1;
      bytes_served = bytes_served + PORT_BYTES;
      r_presenting = 0;
      // INCR: later beats start on the next size-aligned address
      q_addr[q_head] = (q_addr[q_head] & ~(q_size[q_head] - 1)) + q_size[q_head];
      q_beats[q_head] = q_beats[q_head] - 1;
      if (q_beats[q_head] == 0) begin
        q_head = (q_head + 1) % QUEUE;
        q_count = q_count - 1;
      end
    end
  endtask

  // One clock cycle with the DRAM model serving the core.
  task step;
    reg ar_fire, r_fire;
    reg [8*256-1:0] text;
    begin
      m_arready = q_count < max_outstanding;
      drive_r;
      #1;  // the core's combinational logic settles on our new outputs
      ar_fire = m_arvalid === 1'b1 && m_arready;
      r_fire = m_rvalid && m_rready === 1'b1;
      // AXI: once arvalid is up it stays up, with the same request, until arready takes it
      if (ar_waiting && (m_arvalid !== 1'b1 || m_araddr !== waiting_addr
                         || m_arlen !== waiting_len)) begin
        $sformat(text, "m_axi: the core withdrew or changed its AR request (araddr %0d) %0s",
                 waiting_addr, "before arready");
        note(text);
      end
      ar_waiting = m_arvalid === 1'b1 && !m_arready;
      waiting_addr = m_araddr;
      waiting_len = m_arlen;
      if (ar_fire) take_ar;
      lite_aw_fire = s_awvalid && s_awready === 1'b1;
      lite_w_fire = s_wvalid && s_wready === 1'b1;
      lite_bvalid = s_bvalid === 1'b1;
      lite_bresp = s_bresp;
      lite_ar_fire = s_arvalid && s_arready === 1'b1;
      lite_rvalid = s_rvalid === 1'b1;
      lite_rresp = s_rresp;
      lite_rdata = s_rdata;
      clk = 1;
      #1;  // the edge and the core's register updates
      clk = 0;  // the falling edge shares its time step with the next cycle's inputs
      cycles = cycles + 1;
      if (r_fire) take_r;
    end
  endtask

  // AXI4-Lite write: address and data offered together, each held until taken, then B.
  task lite_write(input [11:0] offset, input [31:0] value, output integer resp);
    integer n;
    reg aw, w, b;
    begin
      s_awaddr = offset;
      s_wdata = value;
      s_wstrb = 4'hF;
      s_awvalid = 1;
      s_wvalid = 1;
      s_bready = 1;
      aw = 0; w = 0; b = 0;
      resp = -1;
      for (n = 0; n < LITE_LIMIT && !b; n = n + 1) begin
        step;
        if (aw && w && lite_bvalid) begin
          b = 1;
          resp = lite_bresp;
        end
        if (lite_aw_fire) begin aw = 1; s_awvalid = 0; end
        if (lite_w_fire) begin w = 1; s_wvalid = 0; end
      end
      s_awvalid = 0;
      s_wvalid = 0;
      s_bready = 0;
    end
  endtask

  // AXI4-Lite read: resp -1 when the slave does not answer within LITE_LIMIT cycles.
  task lite_read(input [11:0] offset, output integer resp, output [31:0] value);
    integer n;
    reg ar, r;
    begin
      s_araddr = offset;
      s_arvalid = 1;
      s_rready = 1;
      ar = 0; r = 0;
      resp = -1;
      value = 0;
      for (n = 0; n < LITE_LIMIT && !r; n = n + 1) begin
        step;
        if (ar && lite_rvalid) begin
          r = 1;
          resp = lite_rresp;
          value = lite_rdata;
        end
        if (lite_ar_fire) begin ar = 1; s_arvalid = 0; end
      end
      s_arvalid = 0;
      s_rready = 0;
    end
  endtask

  // Clock until the run is done, at most max_cycles. poll > 0: read CTRL every poll cycles and
  // stop on ap_done (reading clears it, as the host's poll would); poll == 0: stop on irq.
  // result 1 done, 0 budget spent, -1 a register read failed.
  task run_until_done(input [63:0] max_cycles, input [63:0] poll, output integer result);
    reg [63:0] start, poll_at;
    reg [31:0] ctrl;
    integer resp;
    begin
      start = cycles;
      result = 0;
      if (done_seen) result = 1;
      else if (poll == 0) begin
        while (result == 0 && cycles - start < max_cycles) begin
          step;
          if (irq === 1'b1) begin done_seen = 1; result = 1; end
        end
      end else begin
        while (result == 0 && cycles - start < max_cycles) begin
          poll_at = cycles + poll;
          while (cycles < poll_at) step;
          lite_read(12'h000, resp, ctrl);
          if (resp != 0) result = -1;
          else if (ctrl[1]) begin done_seen = 1; result = 1; end
        end
      end
    end
  endtask

  // ---- command loop
  reg [8*1024-1:0] line;
  reg [8*8-1:0] command;
  reg [8*1024-1:0] transfer, vcd;
  reg [63:0] a, b;
  reg [63:0] start_cycles;
  reg [31:0] value;
  integer got, resp, result;

  initial begin
    if (!$value$plusargs("mem_bytes=%d", mem_bytes)) mem_bytes = MEM_WORDS * PORT_BYTES;
    if (!$value$plusargs("latency=%d", latency)) latency = 0;
    if (!$value$plusargs("stall=%d", stall_threshold)) stall_threshold = 0;
    if (!$value$plusargs("outstanding=%d", max_outstanding)) max_outstanding = 8;
    if (!$value$plusargs("seed=%d", rng)) rng = 0;
    if (!$value$plusargs("transfer=%s", transfer)) transfer = "transfer.hex";
    rng = rng ^ 64'h9E3779B97F4A7C15;  // xorshift needs a non-zero state; seed 0 is common
    if (mem_bytes > MEM_WORDS * PORT_BYTES) begin
      $display("=FATAL mem_bytes %0d exceeds the compiled DRAM of %0d bytes", mem_bytes,
               MEM_WORDS * PORT_BYTES);
      $fflush;
      $finish;
    end
    if (max_outstanding > QUEUE) max_outstanding = QUEUE;
    if ($value$plusargs("vcd=%s", vcd)) begin
      $dumpfile(vcd);
      $dumpvars(0, dut);
    end
    // reset: four edges with every valid low, as the C++ harness does
    #1;
    repeat (4) begin
      clk = 1; #1;
      clk = 0; #1;
    end
    rst = 0;
    cycles = 0;
    $display("=READY %0d", PORT_BYTES);
    $fflush;
    forever begin
      line = 0;
      got = $fgets(line, STDIN);
      if (got == 0) $finish;  // the host went away
      command = 0;
      a = 0;
      b = 0;
      got = $sscanf(line, "%s %h %h", command, a, b);
      case (command)
        "W": begin
          $readmemh(transfer, mem, a, a + b - 1);
          $display("=OK");
        end
        "R": begin
          $writememh(transfer, mem, a, a + b - 1);
          $display("=OK");
        end
        "RW": begin
          lite_write(a[11:0], b[31:0], resp);
          $display("=B %0d", resp);
        end
        "RR": begin
          lite_read(a[11:0], resp, value);
          $display("=D %0d %0d", resp, value);
        end
        "RUN": begin
          start_cycles = cycles;
          run_until_done(a, b, result);
          $display("=RUN %0d %0d", result, cycles - start_cycles);
        end
        "STEP": begin
          repeat (a) step;
          $display("=OK");
        end
        "CLR": begin
          done_seen = 0;
          $display("=OK");
        end
        "CYC": $display("=C %0d", cycles);
        "CNT": $display("=N %0d %0d %0d %0d %0d", bytes_served, bursts_taken, stall_cycles,
                        slverr_beats, q_count);
        "ERR": $display("=E %0s", error_text);
        "QUIT": begin
          $fflush;
          $finish;
        end
        default: $display("=? unknown command: %0s", line);
      endcase
      $fflush;
    end
  end
endmodule
