// Bulk stimulus harness for a block with one input and one output stream (Amaranth port names
// i__payload/i__valid/i__ready and o__payload/o__valid/o__ready, clock clk, reset rst).
//
// Python never touches the per-cycle path: the cocotb test writes a batch of input payloads to
// a hex file, pulses `start`, and awaits `done`. The harness then streams the batch through the
// DUT at full speed, with pseudo-random gaps on the input and pseudo-random backpressure on the
// output (xorshift32; probabilities and seed are inputs), stores every output payload in order
// and writes them to a hex file. A watchdog ends the run with `hung` set if the DUT stops
// producing output, so a broken DUT fails the test instead of hanging it.
//
// The DUT module name is the macro DUT (set with -DDUT=<module>).

`ifndef DUT
`error "define DUT as the module name of the device under test"
`endif

module stream_harness #(
    parameter int IN_W     = 32,
    parameter int OUT_W    = 32,
    parameter int ADDR_W   = 16,
    parameter int WATCHDOG = 100000
) (
    input  logic              clk,
    input  logic              rst,
    input  logic              start,      // one-cycle pulse: load the input file, run
    input  logic [ADDR_W:0]   count,      // vectors in this batch (1 … 2**ADDR_W)
    input  logic [7:0]        valid_prob, // P(offer a new input in a cycle) = (valid_prob+1)/256
    input  logic [7:0]        ready_prob, // P(output ready in a cycle)      = (ready_prob+1)/256
    input  logic [31:0]       seed,       // nonzero xorshift32 seed
    output logic              busy,
    output logic              done,       // every output arrived (or `hung`) and was dumped
    output logic              hung,
    output logic [63:0]       cycles,     // cycles from start to done
    output logic [ADDR_W:0]   out_count
);
    localparam int DEPTH = 1 << ADDR_W;

    logic [IN_W-1:0]  stim    [DEPTH];
    logic [OUT_W-1:0] results [DEPTH];

    string in_path, out_path;
    initial begin
        if (!$value$plusargs("HARNESS_IN=%s", in_path))   in_path  = "harness_in.hex";
        if (!$value$plusargs("HARNESS_OUT=%s", out_path)) out_path = "harness_out.hex";
    end

    logic [IN_W-1:0]  i_payload;
    logic             i_valid, i_ready;
    logic [OUT_W-1:0] o_payload;
    logic             o_valid, o_ready;

    `DUT dut (
        .clk        (clk),
        .rst        (rst),
        .i__payload (i_payload),
        .i__valid   (i_valid),
        .i__ready   (i_ready),
        .o__payload (o_payload),
        .o__valid   (o_valid),
        .o__ready   (o_ready)
    );

    logic [31:0]     rnd;
    logic [ADDR_W:0] in_idx;
    logic [31:0]     idle;
    logic            finished;

    function automatic logic [31:0] xorshift32(input logic [31:0] x);
        x = x ^ (x << 13);
        x = x ^ (x >> 17);
        x = x ^ (x << 5);
        return x;
    endfunction

    // An offered input is held until it is taken (stream rule: valid does not drop early).
    assign i_payload = stim[in_idx[ADDR_W-1:0]];
    assign o_ready   = busy && (rnd[15:8] <= ready_prob);

    always_ff @(posedge clk) begin
        if (rst) begin
            rnd <= 32'h1;
            busy <= 1'b0;
            finished <= 1'b0;
            done <= 1'b0;
            hung <= 1'b0;
            i_valid <= 1'b0;
            in_idx <= '0;
            out_count <= '0;
            cycles <= '0;
            idle <= '0;
        end else if (start) begin
            $readmemh(in_path, stim, 0, int'(count) - 1);
            rnd <= (seed == 0) ? 32'h1 : seed;
            busy <= 1'b1;
            finished <= 1'b0;
            done <= 1'b0;
            hung <= 1'b0;
            i_valid <= 1'b0;
            in_idx <= '0;
            out_count <= '0;
            cycles <= '0;
            idle <= '0;
        end else if (busy) begin
            rnd <= xorshift32(rnd);
            cycles <= cycles + 1;
            if (i_valid && i_ready) begin
                in_idx <= in_idx + 1;
                i_valid <= (in_idx + 1 < count) && (rnd[7:0] <= valid_prob);
            end else if (!i_valid) begin
                i_valid <= (in_idx < count) && (rnd[7:0] <= valid_prob);
            end
            if (o_valid && o_ready) begin
                results[out_count[ADDR_W-1:0]] <= o_payload;
                out_count <= out_count + 1;
                idle <= '0;
            end else begin
                idle <= idle + 1;
            end
            if (o_valid && o_ready && out_count + 1 == count) begin
                busy <= 1'b0;
                finished <= 1'b1;
            end else if (idle >= WATCHDOG) begin
                busy <= 1'b0;
                finished <= 1'b1;
                hung <= 1'b1;
            end
        end else if (finished) begin
            // The last result was stored on the previous edge; dump, then report.
            if (out_count != 0)
                $writememh(out_path, results, 0, int'(out_count) - 1);
            finished <= 1'b0;
            done <= 1'b1;
        end
    end
endmodule
