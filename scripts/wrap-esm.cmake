# Wraps Emscripten's MODULARIZE output (a classic script defining createP2PSyncModule) into an
# ES module whose default export is the factory. Used by the WASM build's post-build step.
file(READ ${IN} body)
file(WRITE ${OUT} "// Generated from p2psync_emscripten.js by scripts/wrap-esm.cmake. Do not edit.\n")
file(APPEND ${OUT} "${body}\nexport default createP2PSyncModule;\n")
