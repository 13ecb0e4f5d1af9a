# install.cmake - run by `cmake --install` (make install): installs the systemd unit with
# the real paths filled in, and the sample config unless one is already there (a
# reinstall must not overwrite an operator's settings). Reads CMAKE_INSTALL_PREFIX as
# given at install time, DESTDIR from the environment, and FERRY_SOURCE_DIR and
# FERRY_BINARY_DIR from the caller.

set(prefix "${CMAKE_INSTALL_PREFIX}")
# GNU conventions: a /usr install keeps its configuration in /etc, others under PREFIX.
if(prefix STREQUAL "/usr")
  set(SYSCONFDIR "/etc")
else()
  set(SYSCONFDIR "${prefix}/etc")
endif()
set(BINDIR "${prefix}/bin")

set(unit "${FERRY_BINARY_DIR}/ferry.service")
configure_file("${FERRY_SOURCE_DIR}/packaging/ferry.service" "${unit}" @ONLY)
file(INSTALL "${unit}" DESTINATION "${prefix}/lib/systemd/system"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

# file(INSTALL) prefixes DESTDIR itself; the existence check must do it by hand.
set(conf "$ENV{DESTDIR}${SYSCONFDIR}/ferry/ferry.conf")
if(EXISTS "${conf}")
  message(STATUS "Keeping: ${conf}")
else()
  file(INSTALL "${FERRY_SOURCE_DIR}/packaging/ferry.conf" DESTINATION "${SYSCONFDIR}/ferry"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()
