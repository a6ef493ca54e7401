/* Compiles tessera.h and plugin.h with a C compiler in C99 mode; running it checks the
 * published struct sizes once more at run time. */
#include "tessera/plugin.h"
#include "tessera/tessera.h"

#include <stdio.h>

int main(void) {
  int bad = 0;
  bad |= sizeof(TsrAttrs) != 528;
  bad |= sizeof(TsrTensorInfo) != 184;
  bad |= sizeof(TsrTensorDesc) != 160;
  bad |= sizeof(TsrHostApi) != 72;
  bad |= sizeof(TsrPlugin) != 48;
  if (bad) {
    fprintf(stderr, "published struct sizes changed\n");
    return 1;
  }
  printf("C99 headers OK (ABI %d.%d, plugin ABI %d.%d)\n", TSR_ABI_MAJOR, TSR_ABI_MINOR,
         TSR_PLUGIN_ABI_MAJOR, TSR_PLUGIN_ABI_MINOR);
  return 0;
}
