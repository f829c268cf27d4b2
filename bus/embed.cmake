# bus/embed.cmake: turn a file into C: cmake -DIN=file -DOUT=file.c -DNAME=sym -P
# defines `const char sym[]` (the bytes, then a NUL) and `const size_t
# sym_len`. The live bus page (page.html) is built into libevbus this way, so
# a program serves it with nothing to install beside it.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" nhex)
math(EXPR n "${nhex} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" bytes "${bytes}")
get_filename_component(base "${IN}" NAME)
file(WRITE "${OUT}.tmp"
  "/* generated from ${base} by bus/embed.cmake: edit ${base}, not this */\n"
  "#include <stddef.h>\n"
  "extern const char ${NAME}[];\n"
  "extern const size_t ${NAME}_len;\n"
  "const char ${NAME}[] = {\n${bytes}0};\n"
  "const size_t ${NAME}_len = ${n};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
