// One HBM channel: the storage behind one channel of rtl/memory/hbm.py (class Hbm).
//
// A behavioural model, and the point where an FPGA or emulation build connects its memory
// controller instead: DEPTH words of WIDTH bytes, one access per cycle.
//
//   * Read:  with `re` high in cycle t, `rdata` shows word `addr` from cycle t+1 on and holds
//            until the next read (synchronous read).
//   * Write: every byte i of word `addr` with `we[i]` high takes byte i of `wdata`.
//   * Read during write of the same word returns the OLD data. (The Hbm model never does
//     both in one cycle: a channel serves one request per cycle.)
//   * `addr` at or above DEPTH: a write does nothing, a read returns X (requesters check
//     their ranges; the Hbm wrapper passes the low address bits).
//
// The Hbm model adds the rest of the latency (hbm_latency − 1 cycles) after this module.

module m890_hbm_channel #(
    parameter int WIDTH = 32,           // bytes per word
    parameter int DEPTH = 1024,         // words
    localparam int AW = (DEPTH > 1) ? $clog2(DEPTH) : 1
) (
    input  logic                 clk,
    input  logic                 re,
    input  logic [AW-1:0]        addr,
    input  logic [WIDTH-1:0]     we,
    input  logic [8*WIDTH-1:0]   wdata,
    output logic [8*WIDTH-1:0]   rdata
);

    logic [8*WIDTH-1:0] mem [DEPTH];

    always_ff @(posedge clk) begin
        if (re)
            rdata <= mem[addr];
        for (int i = 0; i < WIDTH; i++)
            if (we[i])
                mem[addr][8*i +: 8] <= wdata[8*i +: 8];
    end

endmodule
