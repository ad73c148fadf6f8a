"""Tests of the scripts in bench/: they run with tiny counts and print their figures (the figures are not compared)."""
