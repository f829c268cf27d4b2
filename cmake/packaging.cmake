# cmake/packaging.cmake: Debian packages with `cpack -G DEB`, one per install
# component (tools/scripts/package.sh builds them as CI does; README.md,
# "Install"). Included last from CMakeLists.txt, after every install() rule.
#
#   component  package         holds
#   lib        libevbus        libevbus.so.1*
#   dev        libevbus-dev    headers, evbus.pc, libevbus.a, libevbus.so
#   tools      evbus-tools     the evbus CLI, its man pages, completion,
#                              evbus-serve@/evbus-mirror@ units and configs
#   services   evbus-services  evbus-reservation, evbus-booking, units, configs
#   bridge     evbus-bridge    evbus-bridge, its unit and config (libnats)
#
# A file reaches a package by its install() rule's COMPONENT, nothing else:
# nobody lists files here. What a component installs under /etc becomes a
# conffile, and its systemd units get maintainer scripts; both are written
# when the component is installed (cmake/deb_control.cmake, below), from the
# component's own install manifest. Runtime dependencies come from
# dpkg-shlibdeps (Debian's packages, never bundled); the packages of one
# build depend on each other by exact version.
#
# Packaging builds use -DCMAKE_INSTALL_PREFIX=/usr
# -DCMAKE_INSTALL_SYSCONFDIR=/etc (as debhelper passes them), so that
# configs installed to ${CMAKE_INSTALL_SYSCONFDIR}/evbus land in /etc/evbus
# while `cmake --install build --prefix DIR` keeps them under DIR.

set(EVBUS_DEB_MAINTAINER "evbus maintainers <maintainers@evbus.invalid>" CACHE STRING
    "Maintainer field of the Debian packages")
set(EVBUS_DEB_HOMEPAGE "https://evbus.invalid/" CACHE STRING
    "Homepage field of the Debian packages")
set(EVBUS_DEB_RELEASE 1 CACHE STRING "Debian revision of the packages (VERSION-RELEASE)")

set(EVBUS_DEB_COMPONENTS lib dev tools services)
if(TARGET evbus_bridge)
  list(APPEND EVBUS_DEB_COMPONENTS bridge)
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME evbus)
set(CPACK_PACKAGE_VENDOR evbus)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${EVBUS_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${EVBUS_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "${EVBUS_DEB_HOMEPAGE}")
set(CPACK_DEBIAN_PACKAGE_RELEASE ${EVBUS_DEB_RELEASE})
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL ${EVBUS_DEB_COMPONENTS})
set(CPACK_COMPONENTS_GROUPING IGNORE)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/deb)
set(CPACK_OUTPUT_CONFIG_FILE ${CMAKE_BINARY_DIR}/CPackConfig.cmake)
# Control files get their proper modes (scripts 0755, conffiles 0644).
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Debian ships stripped binaries (dh_strip); the static archive keeps its symbols.
set(CPACK_STRIP_FILES ON)

# Runtime dependencies: dpkg-shlibdeps on every ELF file. libevbus.so.1 is
# not installed where it looks while packaging: -l points it at the build
# tree's copy, and the exact-version Depends below stands for it.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${CMAKE_BINARY_DIR})
set(EVBUS_DEB_VERSION "${PROJECT_VERSION}-${EVBUS_DEB_RELEASE}")
set(EVBUS_DEB_LIB_DEP "libevbus (= ${EVBUS_DEB_VERSION})")

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libevbus)
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
# A shlibs file (only libevbus has a shared object), so that other packages
# linking libevbus get their Depends from dpkg-shlibdeps.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_LIB_DESCRIPTION "event-sourced services on a broker-less ZeroMQ bus (library)
libevbus: a LevelDB event log per service, msgpack events, ZeroMQ PUB/SUB
with ROUTER/DEALER catch-up, and a service runtime. This package holds the
shared library; programs using it need nothing else from evbus.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libevbus-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "${EVBUS_DEB_LIB_DEP}")
set(CPACK_DEBIAN_DEV_DESCRIPTION "event-sourced services on a broker-less ZeroMQ bus (development files)
Headers (<evbus/...>), evbus.pc for pkg-config, the static libevbus.a and
the libevbus.so link. Linking statically needs the -dev packages of
libevbus's dependencies too (pkg-config --static --libs evbus).")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME evbus-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION net)
set(CPACK_DEBIAN_TOOLS_PACKAGE_DEPENDS "${EVBUS_DEB_LIB_DEP}")
set(CPACK_DEBIAN_TOOLS_DESCRIPTION "event-sourced services on a broker-less ZeroMQ bus (evbus CLI)
The evbus command: inspect, verify, back up and repair event logs, call
services, sniff and mirror the bus, serve a log. With its man pages, bash
completion, and the evbus-serve@ and evbus-mirror@ systemd units.")

set(CPACK_DEBIAN_SERVICES_PACKAGE_NAME evbus-services)
set(CPACK_DEBIAN_SERVICES_PACKAGE_SECTION net)
set(CPACK_DEBIAN_SERVICES_PACKAGE_DEPENDS "${EVBUS_DEB_LIB_DEP}")
set(CPACK_DEBIAN_SERVICES_PACKAGE_SUGGESTS "evbus-tools")
set(CPACK_DEBIAN_SERVICES_DESCRIPTION "event-sourced services on a broker-less ZeroMQ bus (daemons)
The evbus-reservation and evbus-booking daemons with their systemd units
and example configurations.")

set(CPACK_DEBIAN_BRIDGE_PACKAGE_NAME evbus-bridge)
set(CPACK_DEBIAN_BRIDGE_PACKAGE_SECTION net)
set(CPACK_DEBIAN_BRIDGE_PACKAGE_DEPENDS "${EVBUS_DEB_LIB_DEP}")
set(CPACK_DEBIAN_BRIDGE_DESCRIPTION "event-sourced services on a broker-less ZeroMQ bus (NATS bridge)
evbus-bridge exports service logs into NATS JetStream. With its systemd
unit and example configuration.")

# CMake strips programs and shared libraries only; like dh_strip, take the
# debug sections out of libevbus.a too (its symbols stay).
if(CMAKE_STRIP)
  install(CODE "if(CMAKE_INSTALL_DO_STRIP)
  execute_process(COMMAND \"${CMAKE_STRIP}\" --strip-debug --enable-deterministic-archives
      \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/libevbus.a\"
      COMMAND_ERROR_IS_FATAL ANY)
endif()" COMPONENT dev)
endif()

# conffiles and maintainer scripts: every program package gets them (empty
# lists when it installs nothing under /etc or no unit), written into
# build/deb-control/COMPONENT/ by the component's last install step.
foreach(comp tools services bridge)
  if(NOT comp IN_LIST EVBUS_DEB_COMPONENTS)
    continue()
  endif()
  string(TOUPPER ${comp} COMP)
  set(dir ${CMAKE_BINARY_DIR}/deb-control/${comp})
  install(CODE "set(EVBUS_DEB_COMPONENT ${comp})
set(EVBUS_DEB_PACKAGE ${CPACK_DEBIAN_${COMP}_PACKAGE_NAME})
set(EVBUS_DEB_OUT \"${dir}\")
set(EVBUS_DEB_TEMPLATES \"${CMAKE_CURRENT_LIST_DIR}/deb\")
include(\"${CMAKE_CURRENT_LIST_DIR}/deb_control.cmake\")" COMPONENT ${comp})
  set(CPACK_DEBIAN_${COMP}_PACKAGE_CONTROL_EXTRA
      "${dir}/conffiles;${dir}/postinst;${dir}/prerm;${dir}/postrm")
endforeach()

include(CPack)
