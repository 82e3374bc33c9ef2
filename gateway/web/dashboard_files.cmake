# buildd_dashboard_source(VAR): the command that embeds the dashboard's files
# (gateway/web/) as byte arrays in web_assets.cc in the current binary
# directory (see embed.cmake), made again only when one of them changes; VAR
# is set to that source. Used by the gateway's build and the fuzz build.
set(BUILDD_DASHBOARD_FILES index.html app.js app.css favicon.svg)

function(buildd_dashboard_source out)
  set(dir ${PROJECT_SOURCE_DIR}/gateway/web)
  set(generated ${CMAKE_CURRENT_BINARY_DIR}/web_assets.cc)
  list(TRANSFORM BUILDD_DASHBOARD_FILES PREPEND ${dir}/ OUTPUT_VARIABLE paths)
  list(JOIN BUILDD_DASHBOARD_FILES "|" names)
  add_custom_command(
    OUTPUT ${generated}
    COMMAND ${CMAKE_COMMAND} -DDIR=${dir} "-DFILES=${names}" -DOUT=${generated}
            -P ${dir}/embed.cmake
    DEPENDS ${paths} ${dir}/embed.cmake
    COMMENT "Embedding the dashboard (gateway/web)"
    VERBATIM)
  set(${out} ${generated} PARENT_SCOPE)
endfunction()
