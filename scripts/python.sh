#!/bin/sh
# Prints the interpreter `make` builds .venv from (the Makefile's default PYTHON).
#
# The distribution's python3 comes first: Debian and Ubuntu build it with profile-guided and
# link-time optimisation, and de-identification, which is pure Python, needs about a sixth
# less CPU on it than on pyenv's or a plain source build (docs/benchmarks.md, sixteenth
# session). Otherwise the python3 on the PATH. Either must be 3.11+ and able to make a venv
# (Debian's needs the python3-venv package for that); `make PYTHON=...` overrides the choice.
for candidate in /usr/bin/python3 python3; do
  path=$(command -v "$candidate" 2>/dev/null) || continue
  if "$path" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "$path"
    exit 0
  fi
done
echo python3  # none fits: the Makefile's version check says why
