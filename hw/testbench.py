"""Reusable async stream helpers for ``amaranth.sim`` test benches (the Glasgow pattern)."""


async def stream_put(ctx, stream, payload):
    """Offer one payload and wait until the consumer takes it."""
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Accept one payload."""
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


async def run_words(ctx, dut, words, n_out):
    """Send ``words`` on ``dut.i_stream``, then collect ``n_out`` words from ``dut.o_stream``."""
    for w in words:
        await stream_put(ctx, dut.i_stream, w)
    return [await stream_get(ctx, dut.o_stream) for _ in range(n_out)]


def simulate(dut, bench, vcd=None):
    """Run one async test bench against ``dut`` with a 1 MHz clock; returns what the bench returns."""
    from amaranth.sim import Simulator

    sim = Simulator(dut)
    sim.add_clock(1e-6, if_exists=True)
    result = {}

    async def wrapper(ctx):
        result["value"] = await bench(ctx)

    sim.add_testbench(wrapper)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return result.get("value")


def engine_image(program, pixels, dut=None):
    """One image through the RTL network :class:`~rootshift.hw.engine.engine.Engine` (baked program):
    ``INFER`` with the input tensor's words (a shift2 array's bit planes included), the logits, the debug
    read of both buffers, ``STATUS``. Returns ``logits`` (signed), ``fine`` (signed) and ``codes`` as
    ``(words, lanes)`` arrays, and ``status`` (3 words)."""
    import numpy as np

    from .engine.compiler import input_codes
    from .engine.engine import OP_INFER, OP_READ_CODES, OP_READ_FINE, OP_STATUS, Engine, port_config
    from .engine.pixel_unpack import pack_image

    a, L = program.params.array, program.params.array.cols
    dut = Engine(program) if dut is None else dut
    t = program.tensors[program.steps[0]["out"]]
    codes = input_codes(program, pixels)
    words = pack_image(np.asarray(codes).reshape(t["shape"]), a.abits, port_config(program).data_bits)   # host protocol v4
    n = {k: max(s["addr"] + s["words"] for s in program.tensors.values() if s["kind"] == k) for k in ("fine", "codes")}
    classes = program.tensors[program.output]["shape"][0]

    async def bench(ctx):
        res = {"logits": await run_words(ctx, dut, [OP_INFER << 28] + words, classes)}
        for key, op in (("fine", OP_READ_FINE), ("codes", OP_READ_CODES)):
            res[key] = await run_words(ctx, dut, [op << 28 | n[key], 0], n[key] * L)
        res["status"] = await run_words(ctx, dut, [OP_STATUS << 28], 3)
        return res

    res = simulate(dut, bench)
    s32 = np.vectorize(lambda v: v - (1 << 32) if v >> 31 else v, otypes=[np.int64])
    res["logits"] = s32(np.array(res["logits"], np.int64)).tolist()
    res["fine"] = s32(np.array(res["fine"], np.int64)).reshape(-1, L)
    res["codes"] = np.array(res["codes"], np.int64).reshape(-1, L)
    return res
