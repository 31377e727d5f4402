// A C interface to any Verilated one-in/one-out stream top, for ctypes.
//
// The top is an Amaranth component with a clock `clk`, a synchronous reset `rst`, an input
// stream `i` (i__valid, i__ready, i__payload) and an output stream `o` (o__valid, o__ready,
// o__payload), Verilated with `--prefix Vtop`. Payloads cross this interface as arrays of
// little-endian 32-bit words, one fixed-size record per transfer: bit k of a payload is bit
// (k mod 32) of word (k / 32) of its record. The word counts follow from the C++ types
// Verilator gives the ports (CData/SData/IData: 1 word, QData: 2, VlWide<N>: N) and are
// reported by stream_top_words(), so the caller can check them against the port widths.
//
// stream_top_run() is the whole per-cycle path: it offers the requests back to back (a
// request stays on the port until i__ready takes it), keeps o__ready high, stores every
// response, and stops after the last expected response or after `watchdog` cycles without
// one. Each cycle is one evaluation with clk low (inputs applied, combinational outputs
// sampled) and one with clk high (the edge).
//
// Every handle owns its own VerilatedContext and model, so several chips live in one process
// and step independently.
//
// Verilator escapes a double underscore in a port name as `___05F`: the port i__valid is the
// member i___05Fvalid of the model class.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>

#include "Vtop.h"
#include "verilated.h"

namespace {

template <typename T>
struct PortWords;
template <>
struct PortWords<CData> { static constexpr std::size_t value = 1; };
template <>
struct PortWords<SData> { static constexpr std::size_t value = 1; };
template <>
struct PortWords<IData> { static constexpr std::size_t value = 1; };
template <>
struct PortWords<QData> { static constexpr std::size_t value = 2; };
template <std::size_t N>
struct PortWords<VlWide<N>> { static constexpr std::size_t value = N; };

template <typename T>
constexpr std::size_t port_words = PortWords<std::remove_cv_t<std::remove_reference_t<T>>>::value;

template <typename T>
inline void put(T& port, const uint32_t* src) {
    if constexpr (std::is_same_v<T, QData>) {
        port = static_cast<QData>(src[0]) | (static_cast<QData>(src[1]) << 32);
    } else if constexpr (std::is_integral_v<T>) {
        port = static_cast<T>(src[0]);
    } else {
        for (std::size_t k = 0; k < port_words<T>; ++k) port[k] = src[k];
    }
}

template <typename T>
inline void get(uint32_t* dst, const T& port) {
    if constexpr (std::is_same_v<T, QData>) {
        dst[0] = static_cast<uint32_t>(port);
        dst[1] = static_cast<uint32_t>(port >> 32);
    } else if constexpr (std::is_integral_v<T>) {
        dst[0] = static_cast<uint32_t>(port);
    } else {
        for (std::size_t k = 0; k < port_words<T>; ++k) dst[k] = port[k];
    }
}

using InPort = std::remove_reference_t<decltype(std::declval<Vtop&>().i___05Fpayload)>;
using OutPort = std::remove_reference_t<decltype(std::declval<Vtop&>().o___05Fpayload)>;
constexpr std::size_t IN_WORDS = port_words<InPort>;
constexpr std::size_t OUT_WORDS = port_words<OutPort>;

struct StreamTop {
    std::unique_ptr<VerilatedContext> context;
    std::unique_ptr<Vtop> top;
    uint64_t cycles = 0;
    uint64_t taken = 0;

    StreamTop() : context(new VerilatedContext) {
        context->threads(1);
        top.reset(new Vtop{context.get(), "top"});
        top->clk = 0;
        top->rst = 0;
        top->i___05Fvalid = 0;
        top->o___05Fready = 0;
        top->eval();
    }

    ~StreamTop() { top->final(); }

    void edge() {
        top->clk = 1;
        top->eval();
        ++cycles;
        top->clk = 0;
    }
};

}  // namespace

extern "C" {

void* stream_top_create() { return new StreamTop; }

void stream_top_destroy(void* handle) { delete static_cast<StreamTop*>(handle); }

// Payload words of the input (which = 0) or output (which = 1) stream.
size_t stream_top_words(int which) { return which == 0 ? IN_WORDS : OUT_WORDS; }

// Hold the reset for `cycles` cycles with both streams idle.
void stream_top_reset(void* handle, uint64_t cycles) {
    auto* s = static_cast<StreamTop*>(handle);
    Vtop* t = s->top.get();
    t->i___05Fvalid = 0;
    t->o___05Fready = 0;
    t->rst = 1;
    for (uint64_t n = 0; n < (cycles ? cycles : 1); ++n) {
        t->eval();
        s->edge();
    }
    t->rst = 0;
    t->eval();
}

// Clock `cycles` cycles with both streams idle.
void stream_top_step(void* handle, uint64_t cycles) {
    auto* s = static_cast<StreamTop*>(handle);
    Vtop* t = s->top.get();
    t->i___05Fvalid = 0;
    t->o___05Fready = 0;
    for (uint64_t n = 0; n < cycles; ++n) {
        t->eval();
        s->edge();
    }
    t->eval();
}

// Stream `n_req` requests in and collect `n_resp` responses; return the responses received,
// fewer than `n_resp` if `watchdog` (> 0) cycles passed without one. stream_top_taken() then
// tells how many of the requests the top took.
size_t stream_top_run(void* handle, const uint32_t* req, size_t n_req, uint32_t* resp,
                      size_t n_resp, uint64_t watchdog) {
    auto* s = static_cast<StreamTop*>(handle);
    Vtop* t = s->top.get();
    size_t sent = 0, got = 0, loaded = static_cast<size_t>(-1);
    uint64_t quiet = 0;
    t->o___05Fready = 1;
    while (got < n_resp) {
        const bool offer = sent < n_req;
        if (offer && loaded != sent) {
            put(t->i___05Fpayload, req + sent * IN_WORDS);
            loaded = sent;
        }
        t->i___05Fvalid = offer;
        t->eval();
        const bool in_fire = offer && t->i___05Fready;
        const bool out_fire = t->o___05Fvalid;
        if (out_fire) get(resp + (got++) * OUT_WORDS, t->o___05Fpayload);
        s->edge();
        if (in_fire) ++sent;
        if (out_fire) {
            quiet = 0;
        } else if (watchdog && ++quiet >= watchdog) {
            break;
        }
    }
    t->i___05Fvalid = 0;
    t->o___05Fready = 0;
    t->eval();
    s->taken = sent;
    return got;
}

uint64_t stream_top_taken(void* handle) { return static_cast<StreamTop*>(handle)->taken; }

uint64_t stream_top_cycles(void* handle) { return static_cast<StreamTop*>(handle)->cycles; }

}  // extern "C"
