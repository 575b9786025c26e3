"""The board: UART, message framing, per-board tables and the board top (docs/boards.md)."""
