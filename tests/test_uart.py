"""The 8N1 UART (hw/board/uart*.py) in amaranth.sim, bit by bit on its pins (docs/boards.md)."""

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from rootshift.hw.board.uart import UART, uart_divisor
from rootshift.hw.board.uart_rx import UARTRx
from rootshift.sw.errors import ConfigError


def run(dut, bench, processes=()):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    out = {}

    async def wrap(ctx):
        out["v"] = await bench(ctx)

    sim.add_testbench(wrap)
    for p in processes:
        sim.add_process(p)
    sim.run()
    return out["v"]


async def drive_byte(ctx, pin, byte, cycles_per_bit, stop=1):
    """Drive one 8N1 frame on ``pin``; ``cycles_per_bit`` may be fractional (a host clock off by a few %)."""
    bits = [0] + [(byte >> i) & 1 for i in range(8)] + [stop]
    t = 0.0
    for i, b in enumerate(bits):
        ctx.set(pin, b)
        end = round((i + 1) * cycles_per_bit)
        await ctx.tick().repeat(max(1, end - round(t)))
        t = end
    ctx.set(pin, 1)


@pytest.mark.parametrize("clk_hz, baud", [(12_000_000, 3_000_000), (12_000_000, 115_200), (24_000_000, 3_000_000),
                                          (48_000_000, 3_000_000), (7_000_000, 1_000_000)])
def test_loopback(clk_hz, baud):
    """tx pin wired to rx pin: every byte value comes back, in order, at several clock/baud ratios."""
    uart = UART(clk_hz, baud)
    m = Module()
    m.submodules.uart = uart
    m.d.comb += uart.rx_pin.eq(uart.tx_pin)
    data = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80, 0xA5, 0x5A] if uart.divisor > 50 else list(range(256))

    # the transmitter is back-to-back: receive concurrently
    got = []

    async def receiver(ctx):
        ctx.set(uart.rx.ready, 1)
        async for _, _, v, p in ctx.tick().sample(uart.rx.valid, uart.rx.payload):
            if v:
                got.append(p)

    async def sender(ctx):
        for b in data:
            ctx.set(uart.tx.payload, b)
            ctx.set(uart.tx.valid, 1)
            await ctx.tick().until(uart.tx.ready)
            ctx.set(uart.tx.valid, 0)

    sim = Simulator(m)
    sim.add_clock(1 / clk_hz)
    sim.add_testbench(sender)
    sim.add_process(receiver)
    sim.run_until(1 / clk_hz * (12 * uart.divisor * (len(data) + 2)))
    assert got == data


@pytest.mark.parametrize("skew", [0.98, 1.0, 1.02])
@pytest.mark.parametrize("divisor_ratio", [(4_000_000, 1_000_000), (16_000_000, 1_000_000), (12_000_000, 115_200)])
def test_rx_tolerates_host_clock_skew(divisor_ratio, skew):
    """A host whose bit time is off by 2 % either way is still received exactly."""
    clk, baud = divisor_ratio
    uart = UART(clk, baud)
    data = [0x00, 0xFF, 0x5A, 0x81, 0x7E]

    async def bench(ctx):
        for b in data:
            await drive_byte(ctx, uart.rx_pin, b, clk / baud * skew)

    got = []

    async def receiver(ctx):
        ctx.set(uart.rx.ready, 1)
        async for _, _, v, p, fe in ctx.tick().sample(uart.rx.valid, uart.rx.payload, uart.frame_error):
            if v:
                got.append(p)
            assert not fe

    sim = Simulator(uart)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(receiver)
    sim.run_until(1e-6 * (clk / baud * 10.5 * len(data) + 20))
    assert got == data


def test_framing_error_then_recovery():
    """A low stop bit drops the byte and pulses frame_error; the next good byte is received."""
    uart = UART(4_000_000, 1_000_000)
    events = []

    async def bench(ctx):
        await drive_byte(ctx, uart.rx_pin, 0x3C, 4, stop=0)
        ctx.set(uart.rx_pin, 0)                      # hold the line low (a break) a while
        await ctx.tick().repeat(20)
        ctx.set(uart.rx_pin, 1)
        await ctx.tick().repeat(8)
        await drive_byte(ctx, uart.rx_pin, 0xC3, 4)
        await ctx.tick().repeat(10)

    async def monitor(ctx):
        ctx.set(uart.rx.ready, 1)
        async for _, _, v, p, fe in ctx.tick().sample(uart.rx.valid, uart.rx.payload, uart.frame_error):
            if v:
                events.append(("byte", p))
            if fe:
                events.append(("frame_error",))

    sim = Simulator(uart)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(monitor)
    sim.run()
    assert events == [("frame_error",), ("byte", 0xC3)]


def test_rx_back_pressure_holds_byte_and_flags_overrun():
    """An unaccepted byte stays on the stream; the next one is lost with an overrun pulse, never merged."""
    rx = UARTRx(4)
    seen = {"overrun": 0}

    async def bench(ctx):
        ctx.set(rx.rx.ready, 0)
        await drive_byte(ctx, rx.pin, 0x11, 4)
        await drive_byte(ctx, rx.pin, 0x22, 4)
        await ctx.tick().repeat(8)
        assert ctx.get(rx.rx.valid) and ctx.get(rx.rx.payload) == 0x11
        ctx.set(rx.rx.ready, 1)
        await ctx.tick()
        ctx.set(rx.rx.ready, 0)
        assert not ctx.get(rx.rx.valid)
        await drive_byte(ctx, rx.pin, 0x33, 4)
        await ctx.tick().repeat(8)
        return ctx.get(rx.rx.payload), ctx.get(rx.rx.valid)

    async def monitor(ctx):
        async for _, _, ov in ctx.tick().sample(rx.overrun):
            seen["overrun"] += ov

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    res = {}

    async def wrap(ctx):
        res["v"] = await bench(ctx)

    sim.add_testbench(wrap)
    sim.add_process(monitor)
    sim.run()
    assert res["v"] == (0x33, 1)
    assert seen["overrun"] == 1


def test_tx_back_pressure_and_idle_line():
    """tx.ready is low for the whole 10-bit frame, and the pin idles high."""
    uart = UART(4_000_000, 1_000_000)

    async def bench(ctx):
        assert ctx.get(uart.tx_pin) == 1
        ctx.set(uart.tx.payload, 0b1010_0110)
        ctx.set(uart.tx.valid, 1)
        await ctx.tick()
        ctx.set(uart.tx.valid, 0)
        line, busy = [], 0
        for _ in range(40):
            line.append(ctx.get(uart.tx_pin))
            busy += not ctx.get(uart.tx.ready)
            await ctx.tick()
        return line, busy, ctx.get(uart.tx.ready)

    line, busy, ready = run(uart, bench)
    bits = line[::4]
    assert bits == [0, 0, 1, 1, 0, 0, 1, 0, 1, 1]  # start, LSB first, stop
    assert busy == 40 and ready == 1


@pytest.mark.parametrize("clk, baud, match", [
    (12_000_000, 3_000_001, "baud rate must be an integer in 1..3000000"),
    (12_000_000, 0, "baud rate"),
    (8_000_000, 3_000_000, "too slow for 3000000 baud"),
    (17_000_000, 3_000_000, "rate error"),
    (-1, 9600, "clock frequency must be a positive"),
])
def test_divisor_is_validated(clk, baud, match):
    with pytest.raises(ConfigError, match=match):
        UART(clk, baud)


def test_divisor_values():
    assert uart_divisor(12_000_000, 3_000_000) == 4
    assert uart_divisor(12_000_000, 115_200) == 104
    assert uart_divisor(48_000_000, 3_000_000) == 16
    with pytest.raises(ConfigError, match="4.2 % rate error"):
        uart_divisor(25_000_000, 3_000_000)      # the ULX3S's 25 MHz oscillator needs the PLL for 3 Mbaud
