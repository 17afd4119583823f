# Vivado's Tcl commands, stubbed for tclsh: each call is recorded with the handle it returns
# (h1, h2 …; queries return nothing, so the script takes its "add" branches). A command that
# is neither stubbed nor plain Tcl stops the run (exit 3): the stub list stays honest.
#
# Usage: tclsh vivado_stub.tcl <calls file> <script.tcl> [script arguments]
set ::calls {}
set ::handle 0
proc record {args} {
  set h "h[incr ::handle]"
  lappend ::calls [list $h {*}$args]
  return $h
}
proc query {args} {
  lappend ::calls [list "" {*}$args]
  return ""
}
namespace eval ipx {}
foreach cmd {
  create_project add_files set_property update_compile_order close_project package_xo
  ipx::package_project ipx::unload_core ipx::edit_ip_in_project ipx::remove_user_parameter
  ipx::infer_bus_interface ipx::associate_bus_interfaces ipx::add_bus_parameter
  ipx::add_memory_map ipx::add_address_block ipx::add_register ipx::add_register_parameter
  ipx::add_field ipx::create_xgui_files ipx::update_checksums ipx::check_integrity
  ipx::save_core ipx::current_core current_fileset
} {
  proc $cmd {args} [format {return [record %s {*}$args]} $cmd]
}
foreach query {ipx::get_user_parameters ipx::get_bus_interfaces ipx::get_bus_parameters} {
  proc $query {args} [format {return [query %s {*}$args]} $query]
}
proc get_property {args} { return [query get_property {*}$args] }
proc unknown {args} {
  puts stderr "not a stubbed Vivado command: $args"
  exit 3
}

set out [open [lindex $argv 0] w]
set script [lindex $argv 1]
set argv [lrange $argv 2 end]
set argc [llength $argv]
source $script
foreach call $::calls {
  puts $out [join $call "\x1f"]
}
close $out
