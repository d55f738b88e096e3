# Turns the code-context drivers into one C header of NUL-terminated char arrays (cmake -P, at build time):
# the drivers stay real .py/.js/.sh files that can be run and linted on their own, and sbxd carries them.
# -DOUT=<header> -DDIR=<this directory>
set(body "/* Generated from src/api/drivers by embed.cmake; do not edit. */\n#pragma once\n")
foreach(pair "python.py;CONTEXT_DRIVER_PYTHON" "node.js;CONTEXT_DRIVER_NODE" "bash.sh;CONTEXT_DRIVER_BASH")
  list(GET pair 0 file)
  list(GET pair 1 name)
  file(READ "${DIR}/context_${file}" hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "static const char ${name}[] = {${bytes}0x00};\n")
endforeach()
file(WRITE "${OUT}.tmp" "${body}")
file(RENAME "${OUT}.tmp" "${OUT}")
