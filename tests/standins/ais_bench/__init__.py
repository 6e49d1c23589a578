"""STAND-IN for Ascend's ais_bench (tests only; see tests/standins/README.md)."""

STANDIN = True
