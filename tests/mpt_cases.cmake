# Read by ctest (through the TEST_INCLUDE_FILES of tests/CMakeLists.txt)
# each time it runs: asks a test executable for its cases and registers each
# as <module>.<case>, running `test_<module> <case>`.
#
# `test_x --list` prints one line per case: "name timeout [label...]".  The
# ctest TIMEOUT is the case's own limit plus a margin (the runner enforces
# the limit itself and reports); labels are "unit", the module, and the
# case's own (e.g. "slow").  A skipped case (exit status 77) shows as
# skipped.

function(mpt_add_cases module exe margin cmake)
  if(NOT EXISTS "${exe}")
    # Not built yet (or the build failed): one entry that fails, saying so.
    add_test("${module}.NOT_BUILT" "${exe}")
    return()
  endif()
  execute_process(COMMAND "${exe}" --list
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc
                  TIMEOUT 60)
  if(NOT rc EQUAL 0)
    add_test("${module}.LIST_FAILED" "${cmake}" -E echo "${exe} --list: ${rc} ${err}")
    set_tests_properties("${module}.LIST_FAILED" PROPERTIES WILL_FAIL ON)
    return()
  endif()
  string(REPLACE "\n" ";" lines "${out}")
  foreach(line IN LISTS lines)
    if(line STREQUAL "")
      continue()
    endif()
    string(REPLACE " " ";" fields "${line}")
    list(GET fields 0 case)
    list(GET fields 1 limit)
    list(REMOVE_AT fields 0 1)
    math(EXPR timeout "${limit} + ${margin}")
    set(labels unit ${module} ${fields})
    set(test "${module}.${case}")
    add_test("${test}" "${exe}" "${case}")
    set_tests_properties("${test}" PROPERTIES
      TIMEOUT ${timeout}
      LABELS "${labels}"
      SKIP_RETURN_CODE 77)
  endforeach()
endfunction()
