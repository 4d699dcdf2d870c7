# Installs the library into a scratch prefix, then builds and runs a small
# consumer against it twice: with find_package(mproc) and with pkg-config;
# then follows the README: builds its first example with the Install
# section's own command line (pkg-config and an rpath, no
# LD_LIBRARY_PATH), runs it and the installed mproc-manager, and
# uninstalls as `make uninstall` does, leaving nothing of mproc in the
# prefix.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

# The install writes BUILD_DIR/install_manifest.txt, which `make
# uninstall` reads for the user's own install: keep theirs, and take this
# one's list aside.
set(manifest ${BUILD_DIR}/install_manifest.txt)
if(EXISTS ${manifest})
  file(READ ${manifest} users_manifest)
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix}
                RESULT_VARIABLE install_rc OUTPUT_QUIET ERROR_VARIABLE install_err)
if(EXISTS ${manifest})
  file(RENAME ${manifest} ${WORK_DIR}/install_manifest.txt)
endif()
if(DEFINED users_manifest)
  file(WRITE ${manifest} "${users_manifest}")
endif()
if(NOT install_rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed: ${install_err}")
endif()

# 1. find_package(mproc)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/cmake-build
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${C_COMPILER}
    -DCMAKE_BUILD_RPATH=${prefix}/lib)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/cmake-build)
file(GLOB libdirs ${prefix}/lib*)
set(ENV{LD_LIBRARY_PATH} "${prefix}/lib:${prefix}/lib64:$ENV{LD_LIBRARY_PATH}")
run(${WORK_DIR}/cmake-build/consumer)

# 2. pkg-config
find_program(PKG_CONFIG pkg-config)
if(NOT PKG_CONFIG)
  message(FATAL_ERROR "pkg-config is not installed")
endif()
file(GLOB pcdirs ${prefix}/lib*/pkgconfig)
string(REPLACE ";" ":" pcpath "${pcdirs}")
set(ENV{PKG_CONFIG_PATH} "${pcpath}")
execute_process(COMMAND ${PKG_CONFIG} --define-prefix --cflags --libs mproc
                OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not know mproc")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(${C_COMPILER} ${SOURCE_DIR}/tests/consumer/main.c ${flags} -o ${WORK_DIR}/consumer-pc)
run(${WORK_DIR}/consumer-pc)

# 3. The README, literally: its first C example, built with the Install
# section's command line, which must find the library through its rpath.
file(READ ${SOURCE_DIR}/README.md readme)
string(FIND "${readme}" "```c\n" start)
if(start LESS 0)
  message(FATAL_ERROR "README.md has no C example")
endif()
math(EXPR start "${start} + 5")
string(SUBSTRING "${readme}" ${start} -1 rest)
string(FIND "${rest}" "\n```" end)
string(SUBSTRING "${rest}" 0 ${end} first_c)
file(WRITE ${WORK_DIR}/first.c "${first_c}\n")
string(REGEX MATCH "\ncc first\\.c [^\n]*-Wl,-rpath[^\n]*" line "${readme}")
if(NOT line)
  message(FATAL_ERROR "README.md has no 'cc first.c ... -Wl,-rpath...' line")
endif()
string(STRIP "${line}" line)
string(REGEX REPLACE "^cc " "${C_COMPILER} " line "${line}")
unset(ENV{LD_LIBRARY_PATH})
set(ENV{PREFIX} ${prefix})
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
message(STATUS "README: ${line}")
execute_process(COMMAND sh -c "${line}" WORKING_DIRECTORY ${WORK_DIR}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the README's command failed (${rc}): ${line}\n${out}\n${err}")
endif()
execute_process(COMMAND ${WORK_DIR}/first RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "returned 27")
  message(FATAL_ERROR "the README's first example: ${rc}, '${out}' ${err}")
endif()
message(STATUS "README's first example: ${out}")
file(GLOB tools ${prefix}/bin/*)
foreach(tool ${tools})
  execute_process(COMMAND ${tool} --help RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(err MATCHES "cannot open shared object")
    message(FATAL_ERROR "${tool} does not find the library: ${err}")
  endif()
endforeach()

# 4. Uninstall, as `make uninstall`, with this install's manifest: nothing
# of mproc is left (the prefix's shared directories may stay, empty).
run(${CMAKE_COMMAND} -DMANIFEST=${WORK_DIR}/install_manifest.txt
    -P ${SOURCE_DIR}/cmake/uninstall.cmake)
file(GLOB_RECURSE left LIST_DIRECTORIES true ${prefix}/*)
foreach(f ${left})
  if(NOT IS_DIRECTORY ${f} OR f MATCHES "mproc")
    message(FATAL_ERROR "left in the prefix after uninstall: ${f}")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK_DIR})
