// A behavioural model of the ECP5 DP16KD, for tests/test_engine_bram_outreg.py only. YoWASP Yosys
// ships the cell as an empty stub (share/lattice/cells_sim_ecp5.v), so this is written from the
// datasheet's description (Lattice TN1264) for what RegisteredMemory uses: port A writes, port B reads,
// widths 1/2/4/9/18, WRITEMODE NORMAL, REGMODE NOREG or OUTREG, synchronous RST of the output
// register, chip selects tied to 0, the INITVAL_xx image. Address pins carry a bit address: the word is
// AD[13:s] with s = 0, 1, 2, 3, 4, 5 for 1, 2, 4, 9, 18, 36 bits. 1/2/4-bit words use the 8 data bits of
// each 9-bit byte; 9/18/36-bit words fill the 18,432 bits densely (INITVAL: 1,024 rows of 18 bits, each in
// a 20-bit field). 36 bits is the pseudo-dual-port mode (PDPW16KD): the write word is {DIB, DIA} with
// byte enables AD[3:0] of port A, the read word {DOB, DOA}, both halves registered on port B's clock
// enable and reset (REGMODE_A selects the low half's register). A read of the word port A writes in the
// same cycle reads X (a collision).
// The model's own mapping is checked against Yosys's INITVAL for inferred memories (the same test).
module DP16KD (
  input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
  input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
  input CEA, OCEA, CLKA, WEA, RSTA,
  input CSA2, CSA1, CSA0,
  output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
  input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
  input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
  input CEB, OCEB, CLKB, WEB, RSTB,
  input CSB2, CSB1, CSB0,
  output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
  parameter DATA_WIDTH_A = 18;
  parameter DATA_WIDTH_B = 18;
  parameter REGMODE_A = "NOREG";
  parameter REGMODE_B = "NOREG";
  parameter RESETMODE = "SYNC";
  parameter ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_A = "0b000";
  parameter CSDECODE_B = "0b000";
  parameter WRITEMODE_A = "NORMAL";
  parameter WRITEMODE_B = "NORMAL";
  parameter GSR = "AUTO";
  parameter [319:0] INITVAL_00 = 0, INITVAL_01 = 0, INITVAL_02 = 0, INITVAL_03 = 0, INITVAL_04 = 0, INITVAL_05 = 0,
    INITVAL_06 = 0, INITVAL_07 = 0, INITVAL_08 = 0, INITVAL_09 = 0, INITVAL_0A = 0, INITVAL_0B = 0, INITVAL_0C = 0,
    INITVAL_0D = 0, INITVAL_0E = 0, INITVAL_0F = 0, INITVAL_10 = 0, INITVAL_11 = 0, INITVAL_12 = 0, INITVAL_13 = 0,
    INITVAL_14 = 0, INITVAL_15 = 0, INITVAL_16 = 0, INITVAL_17 = 0, INITVAL_18 = 0, INITVAL_19 = 0, INITVAL_1A = 0,
    INITVAL_1B = 0, INITVAL_1C = 0, INITVAL_1D = 0, INITVAL_1E = 0, INITVAL_1F = 0, INITVAL_20 = 0, INITVAL_21 = 0,
    INITVAL_22 = 0, INITVAL_23 = 0, INITVAL_24 = 0, INITVAL_25 = 0, INITVAL_26 = 0, INITVAL_27 = 0, INITVAL_28 = 0,
    INITVAL_29 = 0, INITVAL_2A = 0, INITVAL_2B = 0, INITVAL_2C = 0, INITVAL_2D = 0, INITVAL_2E = 0, INITVAL_2F = 0,
    INITVAL_30 = 0, INITVAL_31 = 0, INITVAL_32 = 0, INITVAL_33 = 0, INITVAL_34 = 0, INITVAL_35 = 0, INITVAL_36 = 0,
    INITVAL_37 = 0, INITVAL_38 = 0, INITVAL_39 = 0, INITVAL_3A = 0, INITVAL_3B = 0, INITVAL_3C = 0, INITVAL_3D = 0,
    INITVAL_3E = 0, INITVAL_3F = 0;

  reg mem [0:18431];
  wire [20479:0] iv = {INITVAL_3F, INITVAL_3E, INITVAL_3D, INITVAL_3C, INITVAL_3B, INITVAL_3A, INITVAL_39, INITVAL_38,
    INITVAL_37, INITVAL_36, INITVAL_35, INITVAL_34, INITVAL_33, INITVAL_32, INITVAL_31, INITVAL_30, INITVAL_2F,
    INITVAL_2E, INITVAL_2D, INITVAL_2C, INITVAL_2B, INITVAL_2A, INITVAL_29, INITVAL_28, INITVAL_27, INITVAL_26,
    INITVAL_25, INITVAL_24, INITVAL_23, INITVAL_22, INITVAL_21, INITVAL_20, INITVAL_1F, INITVAL_1E, INITVAL_1D,
    INITVAL_1C, INITVAL_1B, INITVAL_1A, INITVAL_19, INITVAL_18, INITVAL_17, INITVAL_16, INITVAL_15, INITVAL_14,
    INITVAL_13, INITVAL_12, INITVAL_11, INITVAL_10, INITVAL_0F, INITVAL_0E, INITVAL_0D, INITVAL_0C, INITVAL_0B,
    INITVAL_0A, INITVAL_09, INITVAL_08, INITVAL_07, INITVAL_06, INITVAL_05, INITVAL_04, INITVAL_03, INITVAL_02,
    INITVAL_01, INITVAL_00};
  integer i;
  initial for (i = 0; i < 18432; i = i + 1) mem[i] = iv[(i / 18) * 20 + i % 18];

  wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
  wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};
  wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
  wire [17:0] dib = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
  wire [35:0] din = DATA_WIDTH_A == 36 ? {dib, dia} : {18'd0, dia};

  function integer sh(input integer w);
    sh = w == 1 ? 0 : w == 2 ? 1 : w == 4 ? 2 : w == 9 ? 3 : w == 18 ? 4 : 5;
  endfunction
  // bit k of word `word` at width w: its place in mem
  function integer pos(input integer w, input integer word, input integer k);
    pos = (w >= 9) ? word * w + k : ((word * w + k) / 8) * 9 + (word * w + k) % 8;
  endfunction

  wire [13:0] worda = ada >> sh(DATA_WIDTH_A);
  wire [13:0] wordb = adb >> sh(DATA_WIDTH_B);
  wire [3:0] be = {ADA3, ADA2, ADA1, ADA0};
  reg [35:0] latb = 0, outb = 0;
  integer k;
  always @(posedge CLKA) begin
    if (CEA && WEA)
      for (k = 0; k < DATA_WIDTH_A; k = k + 1)
        if (DATA_WIDTH_A == 36 ? be[k / 9] : DATA_WIDTH_A != 18 || (k < 9 ? ADA0 : ADA1))
          mem[pos(DATA_WIDTH_A, worda, k)] <= din[k];
  end
  wire writing = CEA && WEA && (DATA_WIDTH_A != 36 || be != 0);
  always @(posedge CLKB) begin
    if (CEB)
      for (k = 0; k < 36; k = k + 1)
        latb[k] <= k >= DATA_WIDTH_B ? 1'b0 :
                   (writing && DATA_WIDTH_A == DATA_WIDTH_B && worda == wordb) ? 1'bx : mem[pos(DATA_WIDTH_B, wordb, k)];
    if (RSTB) outb <= 0;
    else if (OCEB) outb <= latb;
  end
  wire [17:0] doa = DATA_WIDTH_B != 36 ? 18'd0 : REGMODE_A == "OUTREG" ? outb[17:0] : latb[17:0];
  wire [17:0] dob = DATA_WIDTH_B != 36 ? (REGMODE_B == "OUTREG" ? outb[17:0] : latb[17:0])
                                       : (REGMODE_B == "OUTREG" ? outb[35:18] : latb[35:18]);
  assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = dob;
  assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = doa;
endmodule
