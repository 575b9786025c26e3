"""PLL parameters and instances for the board clock (iCE40 SB_PLL40_CORE, ECP5 EHXPLLL, Gowin rPLL).

The divider search follows the datasheets' ranges (iCE40 sysCLOCK PLL: PFD 10..133 MHz, VCO
533..1066 MHz; ECP5 sysCLOCK: PFD >= 3.125 MHz, VCO 400..800 MHz; Gowin GW1NR-9 C6/I5 rPLL, DS117:
PFD 3..400 MHz, VCO 400..1200 MHz, CLKOUT 3.125..600 MHz; GW2A-18 C8/I7, DS102: PFD 3..500 MHz, VCO
500..1250 MHz) and accepts only exact frequencies,
so the UART divisor derived from ``clock_mhz`` is exact too.
"""

from fractions import Fraction

from amaranth.hdl import Const, Instance

from rootshift.sw.errors import ConfigError


def ice40_pll_params(fin_mhz, fout_mhz):
    fin, fout = Fraction(fin_mhz), Fraction(fout_mhz)
    for divr in range(16):
        pfd = fin / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divq in range(1, 7):
            divf1 = fout * (2 ** divq) / pfd
            if divf1.denominator == 1 and 1 <= divf1 <= 128 and 533 <= pfd * divf1 <= 1066:
                filt = next(i for i, hi in enumerate((17, 26, 44, 66, 101, 134), 1) if pfd < hi)
                return {"DIVR": divr, "DIVF": int(divf1) - 1, "DIVQ": divq, "FILTER_RANGE": filt}
    raise ConfigError(f"no iCE40 PLL setting makes exactly {fout_mhz} MHz from {fin_mhz} MHz")


def ecp5_pll_params(fin_mhz, fout_mhz):
    fin, fout = Fraction(fin_mhz), Fraction(fout_mhz)
    for clki in range(1, 129):
        pfd = fin / clki
        if pfd < Fraction(3125, 1000):
            break
        fb = fout / pfd
        if fb.denominator != 1 or not 1 <= fb <= 80:
            continue
        for op in sorted(range(1, 129), key=lambda d: abs(fout * d - 600)):
            if 400 <= fout * op <= 800:
                return {"CLKI_DIV": clki, "CLKFB_DIV": int(fb), "CLKOP_DIV": op}
    raise ConfigError(f"no ECP5 PLL setting makes exactly {fout_mhz} MHz from {fin_mhz} MHz")


# rPLL limits in MHz per Gowin device and speed grade (DS117 GW1NR-9 C6/I5, DS102 GW2A-18 C8/I7; the same as
# Apycula's gowin_pll)
GOWIN_RPLL_LIMITS = {"GW1NR-9C": {"pfd": (3, 400), "vco": (400, 1200), "clkout": (3.125, 600)},
                     "GW2A-18C": {"pfd": (3, 500), "vco": (500, 1250), "clkout": (3.90625, 625)}}   # DS102 C8/I7
GOWIN_ODIV = (2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128)


def gowin_pll_params(fin_mhz, fout_mhz, device="GW1NR-9C"):
    """rPLL dividers: CLKOUT = FCLKIN * (FBDIV_SEL + 1) / (IDIV_SEL + 1), VCO = CLKOUT * ODIV_SEL."""
    if device not in GOWIN_RPLL_LIMITS:
        raise ConfigError(f"no rPLL limits for Gowin device {device!r}; known: {', '.join(GOWIN_RPLL_LIMITS)}")
    lim = GOWIN_RPLL_LIMITS[device]
    fin, fout = Fraction(fin_mhz), Fraction(fout_mhz)
    if not lim["clkout"][0] <= fout <= lim["clkout"][1]:
        raise ConfigError(f"the rPLL of {device} makes {lim['clkout'][0]}..{lim['clkout'][1]} MHz, not {fout_mhz} MHz")
    for idiv in range(64):
        pfd = fin / (idiv + 1)
        if not lim["pfd"][0] <= pfd <= lim["pfd"][1]:
            continue
        fb = fout / pfd
        if fb.denominator != 1 or not 1 <= fb <= 64:
            continue
        for odiv in sorted(GOWIN_ODIV, key=lambda d: abs(fout * d - 800)):
            if lim["vco"][0] <= fout * odiv <= lim["vco"][1]:
                return {"IDIV_SEL": idiv, "FBDIV_SEL": int(fb) - 1, "ODIV_SEL": odiv}
    raise ConfigError(f"no Gowin rPLL setting makes exactly {fout_mhz} MHz from {fin_mhz} MHz")


def pll_instance(family, fin_mhz, fout_mhz, clk_in, clk_out, locked, device=None):
    """The PLL primitive: ``clk_in`` is the oscillator pad (iCE40, an IOValue) or its buffered input (ECP5,
    Gowin). ``device`` names the Gowin part's family for the rPLL (``GW1NR-9C``)."""
    if family == "ice40":
        # ``clk_in`` is the oscillator's pad itself: on the UP5K the PLL sits behind that pad (pin 35 on
        # the iCEBreaker), so SB_PLL40_PAD takes it before any input buffer
        p = ice40_pll_params(fin_mhz, fout_mhz)
        return Instance("SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["DIVR"], p_DIVF=p["DIVF"],
                        p_DIVQ=p["DIVQ"], p_FILTER_RANGE=p["FILTER_RANGE"], i_PACKAGEPIN=clk_in,
                        o_PLLOUTGLOBAL=clk_out, o_LOCK=locked, i_RESETB=1, i_BYPASS=0)
    if family == "ecp5":
        p = ecp5_pll_params(fin_mhz, fout_mhz)
        return Instance("EHXPLLL", a_FREQUENCY_PIN_CLKI=str(fin_mhz), a_FREQUENCY_PIN_CLKOP=str(fout_mhz),
                        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                        p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"], p_CLKOP_DIV=p["CLKOP_DIV"],
                        p_CLKOP_CPHASE=p["CLKOP_DIV"] - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                        i_RST=0, i_STDBY=0, i_CLKI=clk_in, o_CLKOP=clk_out, i_CLKFB=clk_out, i_PHASESEL0=0,
                        i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0,
                        i_ENCLKOP=0, o_LOCK=locked)
    if family == "gowin":
        p = gowin_pll_params(fin_mhz, fout_mhz, device)
        return Instance("rPLL", p_FCLKIN=f"{float(fin_mhz):g}", p_DEVICE=device, p_IDIV_SEL=p["IDIV_SEL"],
                        p_FBDIV_SEL=p["FBDIV_SEL"], p_ODIV_SEL=p["ODIV_SEL"], p_DYN_IDIV_SEL="false",
                        p_DYN_FBDIV_SEL="false", p_DYN_ODIV_SEL="false", p_CLKFB_SEL="internal",
                        p_CLKOUTP_BYPASS="false", p_CLKOUTD_BYPASS="false", p_CLKOUT_BYPASS="false",
                        i_CLKIN=clk_in, i_CLKFB=0, i_RESET=0, i_RESET_P=0, i_FBDSEL=Const(0, 6),
                        i_IDSEL=Const(0, 6), i_ODSEL=Const(0, 6), i_PSDA=Const(0, 4), i_DUTYDA=Const(0, 4),
                        i_FDLY=Const(0, 4), o_CLKOUT=clk_out, o_LOCK=locked)
    raise ConfigError(f"no PLL for FPGA family {family!r}")
