/*
 * fuzz_store_open.c - opening a store file that someone else made: the
 * input becomes the main database, the chunk database or both, and
 * fz_exercise_store() opens it read-only and read-write and touches
 * everything. Input: byte 0 selects the layout (mod 4):
 *   0  rest = main file, beside the template's chunk file
 *   1  rest = chunk file, beside the template's main file
 *   2  u32le N, then N bytes of main file, the rest chunk file
 *   3  rest = main file, no chunk file
 * The template is the small store of fz_make_template_store() (fixed store
 * id, so fuzzed files made from it match it).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

static uint8_t *tpl_main, *tpl_chunks;
static size_t tpl_main_n, tpl_chunks_n;

static void init(void)
{
    const char *tpl = fz_path("template");
    fz_make_template_store(tpl, 1);
    tpl_main = fz_read_file(tpl, &tpl_main_n);
    tpl_chunks = fz_read_file(fz_path("template-chunks"), &tpl_chunks_n);
    if (!tpl_main || !tpl_chunks)
        abort();
    fz_remove_store(tpl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tpl_main)
        init();
    if (size < 1)
        return 0;
    int mode = data[0] % 4;
    data++, size--;
    const char *path = fz_path("s"), *cpath = fz_path("s-chunks");
    fz_remove_store(path);
    switch (mode) {
    case 0:
        fz_write_file(path, data, size);
        fz_write_file(cpath, tpl_chunks, tpl_chunks_n);
        break;
    case 1:
        fz_write_file(path, tpl_main, tpl_main_n);
        fz_write_file(cpath, data, size);
        break;
    case 2: {
        size_t n = 0;
        if (size >= 4) {
            n = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 |
                (size_t)data[3] << 24;
            data += 4, size -= 4;
        }
        if (n > size)
            n = size;
        fz_write_file(path, data, n);
        fz_write_file(cpath, data + n, size - n);
        break;
    }
    default:
        fz_write_file(path, data, size);
        break;
    }
    fz_exercise_store(path);
    fz_remove_store(path);
    return 0;
}
