# Turns a file into a C source with its bytes: used for docs/openapi.json, so the binary
# serves exactly the document in the tree it was built from, wherever it runs.
# Usage: cmake -DINPUT=file -DOUTPUT=file.c -DSYMBOL=name -P embed.cmake
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_len)
math(EXPR n_bytes "${hex_len} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE "${OUTPUT}"
  "/* generated from ${INPUT}; do not edit */\n#include <stddef.h>\n"
  "const char ${SYMBOL}[] = {${body} 0};\n"
  "const size_t ${SYMBOL}_len = ${n_bytes};\n")
