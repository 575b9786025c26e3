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
