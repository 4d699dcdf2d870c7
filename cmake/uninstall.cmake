# uninstall.cmake - removes what an install of this build put in place:
#
#   cmake -DMANIFEST=build/install_manifest.txt -P cmake/uninstall.cmake
#
# (`make uninstall` runs this.)  MANIFEST is the list `cmake --install`
# writes into the build tree: every file it installed, one a line.  Each is
# removed, then mproc's own directories (include/mproc, lib*/cmake/mproc)
# once they are empty.  The prefix's shared directories (lib, include,
# lib/pkgconfig) stay.  Run it as whoever installed (root for a system
# prefix).
if(NOT MANIFEST)
  message(FATAL_ERROR "uninstall.cmake: pass -DMANIFEST=<build>/install_manifest.txt")
endif()
if(NOT EXISTS "${MANIFEST}")
  message(FATAL_ERROR "uninstall.cmake: ${MANIFEST} does not exist: nothing was installed "
                      "from this build tree (or it was cleaned)")
endif()

file(STRINGS "${MANIFEST}" files)
set(dirs)
set(failed)
foreach(f IN LISTS files)
  if(IS_SYMLINK "${f}" OR EXISTS "${f}")
    message(STATUS "Removing ${f}")
    file(REMOVE "${f}")
    if(IS_SYMLINK "${f}" OR EXISTS "${f}")
      list(APPEND failed "${f}")
    endif()
  else()
    message(STATUS "Already gone: ${f}")
  endif()
  get_filename_component(d "${f}" DIRECTORY)
  list(APPEND dirs "${d}")
endforeach()

# mproc's own directories, deepest first, when nothing else lives there.
list(REMOVE_DUPLICATES dirs)
list(SORT dirs ORDER DESCENDING)
foreach(d IN LISTS dirs)
  get_filename_component(name "${d}" NAME)
  if(name STREQUAL "mproc" AND IS_DIRECTORY "${d}")
    file(GLOB left "${d}/*")
    if(NOT left)
      message(STATUS "Removing ${d}/")
      file(REMOVE_RECURSE "${d}")
    endif()
  endif()
endforeach()

if(failed)
  message(FATAL_ERROR "uninstall.cmake: could not remove: ${failed} (permissions?)")
endif()
