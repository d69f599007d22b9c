{
  "targets": [{
    "target_name": "fuse",
    "include_dirs": [
      "<!(node -p \"require('path').dirname(require.resolve('napi-macros/napi-macros.h'))\")",
      "<!(node -p \"require('fuse-shared-library').include\")"
    ],
    "libraries": [
      "<!(node -p \"require('fuse-shared-library').lib\")",
      "-Wl,-rpath,'$$ORIGIN'"
    ],
    "sources": [ "fuse-native.c" ],
    "defines": [ "_FILE_OFFSET_BITS=64", "NAPI_VERSION=8" ],
    "cflags": [ "-g", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter" ]
  }, {
    "target_name": "libfuse",
    "type": "none",
    "dependencies": [ "fuse" ],
    "actions": [{
      "action_name": "copy_libfuse",
      "inputs": [ "<!(node -p \"require('fuse-shared-library').lib\")" ],
      "outputs": [ "<(PRODUCT_DIR)/libfuse.so.2" ],
      "action": [ "cp", "-f", "<@(_inputs)", "<@(_outputs)" ]
    }]
  }]
}
