/* Empty translation unit of the *_layer_check shared objects (CMakeLists.txt): the layer's archive is linked
 * in whole with -Wl,--no-undefined, so any call into a layer above it fails to link. */
int diffrt_layer_check_anchor(void);
int diffrt_layer_check_anchor(void) { return 0; }
