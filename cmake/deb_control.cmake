# cmake/deb_control.cmake: run as a component's last install step
# (install(CODE) from cmake/packaging.cmake). When CPack installs that one
# component, writes its Debian control files into EVBUS_DEB_OUT:
#   conffiles  every file the component installs under /etc
#   postinst, prerm, postrm  (from cmake/deb/*.in) for the systemd units it
#              installs under lib/systemd/system, and the state directories
#              their StateDirectory= lines name
# In a plain `cmake --install` (all components) it does nothing.
#
# Inputs: EVBUS_DEB_COMPONENT, EVBUS_DEB_PACKAGE, EVBUS_DEB_OUT,
# EVBUS_DEB_TEMPLATES; CMAKE_INSTALL_MANIFEST_FILES (what this install wrote,
# as absolute paths without DESTDIR).
if(NOT CMAKE_INSTALL_COMPONENT STREQUAL EVBUS_DEB_COMPONENT)
  return()
endif()

set(conffiles "")
set(units "")
set(templates "")
set(state "")
foreach(f IN LISTS CMAKE_INSTALL_MANIFEST_FILES)
  if(f MATCHES "^/etc/")
    string(APPEND conffiles "${f}\n")
  elseif(f MATCHES "^/usr/etc/|^/usr/local/")
    message(FATAL_ERROR "${EVBUS_DEB_PACKAGE}: ${f}: configure the packaging build with "
            "-DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_SYSCONFDIR=/etc")
  elseif(f MATCHES "/lib/systemd/system/([^/]+\\.(service|socket|timer|path|target))$")
    set(unit ${CMAKE_MATCH_1})
    if(unit MATCHES "@\\.")
      list(APPEND templates ${unit})
    else()
      list(APPEND units ${unit})
    endif()
    # StateDirectory=evbus/NAME (DynamicUser: /var/lib/private/evbus/NAME,
    # reached through /var/lib/evbus/NAME). Specifiers (%i) become globs.
    file(STRINGS "$ENV{DESTDIR}${f}" lines REGEX "^[ \t]*StateDirectory[ \t]*=")
    foreach(line IN LISTS lines)
      string(REGEX REPLACE "^[ \t]*StateDirectory[ \t]*=[ \t]*" "" dirs "${line}")
      string(REGEX REPLACE "%[a-zA-Z]" "*" dirs "${dirs}")
      separate_arguments(dirs UNIX_COMMAND "${dirs}")
      foreach(d IN LISTS dirs)
        string(REGEX REPLACE ":.*" "" d "${d}") # a "DIR:MODE"-free path only
        if(NOT d MATCHES "^evbus([/-][A-Za-z0-9@._*-]+)*$")
          message(FATAL_ERROR "${f}: StateDirectory ${d}: purge deletes only "
                  "directories under evbus/ (or evbus-*), without '..'")
        endif()
        if(d MATCHES "\\.\\.")
          message(FATAL_ERROR "${f}: StateDirectory ${d} has '..'")
        endif()
        list(APPEND state ${d})
      endforeach()
    endforeach()
  endif()
endforeach()
list(REMOVE_DUPLICATES state)

string(REPLACE ";" " " EVBUS_DEB_UNITS "${units}")
string(REPLACE ";" " " EVBUS_DEB_TEMPLATE_UNITS "${templates}")
string(REPLACE ";" " " EVBUS_DEB_STATE_DIRS "${state}")
file(MAKE_DIRECTORY "${EVBUS_DEB_OUT}")
file(WRITE "${EVBUS_DEB_OUT}/conffiles" "${conffiles}")
foreach(script postinst prerm postrm)
  configure_file("${EVBUS_DEB_TEMPLATES}/${script}.in" "${EVBUS_DEB_OUT}/${script}" @ONLY)
endforeach()
message(STATUS "${EVBUS_DEB_PACKAGE}: units [${units}] templates [${templates}] "
        "state [${state}] conffiles [${conffiles}]")
