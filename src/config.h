/*
 * config.h - strict parsing of a run's YAML config (untrusted input) into
 * flattened parameters, and the helpers the store uses around it.
 */
#ifndef CKPT_CONFIG_H
#define CKPT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

/* Limits of ckpt_config_flatten(); every one is checked before it could be
 * exceeded, so time and memory stay proportional to the document size. */
#define CKPT__CONFIG_MAX_BYTES  ((size_t)1 << 20) /* whole document, and a file */
#define CKPT__CONFIG_MAX_DEPTH  64                /* nested mappings + sequences */
#define CKPT__CONFIG_MAX_PARAMS 100000            /* flattened parameters */
#define CKPT__CONFIG_MAX_KEY    1024              /* bytes of one dotted key path */
#define CKPT__CONFIG_MAX_OUTPUT ((size_t)16 << 20) /* sum of all key + value bytes */

/*
 * Rules of ckpt_config_flatten() beyond its comment in ckpt.h (the README's
 * config section should repeat them):
 * - One document at most; an empty stream, an empty document or a top-level
 *   plain null (``, `~`, `null`) gives no parameters. Otherwise the top level
 *   must be a mapping.
 * - Rejected: anchors and aliases (no alias is ever expanded), nesting deeper
 *   than CKPT__CONFIG_MAX_DEPTH, duplicate keys, keys that are mappings or
 *   sequences, empty keys, keys containing '.' (no escaping: a '.' in a
 *   flattened key always separates levels) or a control or line-break
 *   character (C0, DEL, C1, U+2028, U+2029, BOM, U+FFFE/U+FFFF), a NUL in any
 *   key or value (e.g. from a "\0" escape), invalid UTF-8 and other control
 *   characters (the input must be UTF-8; a UTF-16 stream is rejected), more
 *   than CKPT__CONFIG_MAX_PARAMS parameters, key paths longer than
 *   CKPT__CONFIG_MAX_KEY bytes, integers outside int64 (quote them to keep
 *   them as strings), and YAML syntax errors.
 * - Tags: on a scalar only the standard !!str !!int !!float !!bool !!null are
 *   accepted (they set the type; a value that does not fit the tag, like
 *   `!!int abc`, is rejected). Any other tag, the non-specific `!`, local tags
 *   and any tag on a mapping or sequence are rejected. Tags are compared after
 *   %TAG resolution, so redefining `!!` does not get around the check.
 * - Keys are compared as written: `1` and `"1"` are the same key (both
 *   flatten to the same path); `1` and `01` are different keys.
 * - Types follow the YAML 1.2 core schema for plain scalars: null (``, `~`,
 *   null/Null/NULL), bool (true/True/TRUE/false/False/FALSE; yes/no/on/off are
 *   strings), int ([-+]?[0-9]+, 0x[0-9a-fA-F]+, 0o[0-7]+; no sign on hex or
 *   octal, no `_`), float ([-+]?(.[0-9]+|[0-9]+(.[0-9]*)?)([eE][-+]?[0-9]+)?,
 *   [-+]?.inf in three cases, .nan in three cases). Quoted and block scalars are
 *   strings. Values: ints and floats as written, bools "true"/"false", null
 *   "null", strings as parsed.
 * - A sequence of scalars only is one CKPT_PARAM_T_LIST parameter: items in
 *   document order, written as above except strings, which are JSON-quoted
 *   ("\"relu\""; the characters listed for keys as \n, \t, \u0085, ...),
 *   joined by ", " inside "[" "]", so the value reads back to the same list
 *   as JSON (numbers permitting) or YAML. An empty sequence gives "[]". A
 *   sequence holding any
 *   mapping or sequence gives every item an index component ("layers.0.width",
 *   "mixed.1" for a scalar item), emitted in document order.
 * - An empty mapping gives no parameter (it has no leaf to flatten); the
 *   verbatim YAML keeps it.
 */

/* Reads a whole config file (at most CKPT__CONFIG_MAX_BYTES, else CKPT_EINVAL
 * naming the file) into a NUL-terminated buffer; free with ckpt__free.
 * out_len may be NULL. Pipes and other non-regular files are read up to the
 * limit as well; a directory is CKPT_EINVAL. Errors CKPT_ENOTFOUND /
 * CKPT_EIO / CKPT_EINVAL / CKPT_ENOMEM with the path in the message. */
int ckpt__config_read_file(const char *path, char **out, size_t *out_len);

/* Converts the text of a CKPT_PARAM_T_INT value (decimal with optional sign,
 * 0x hex, 0o octal) to its value. Errors: CKPT_EINVAL (not such an int, or
 * outside int64: flatten never produces either). Sets no message on success. */
int ckpt__config_int_value(const char *text, int64_t *out);

/* Converts the text of a CKPT_PARAM_T_FLOAT value (any core-schema float or
 * int form, .inf, -.inf, .nan) to a double, independently of the C locale.
 * Magnitudes beyond double give +-inf, tiny ones 0 or a subnormal.
 * Errors: CKPT_EINVAL (not a core-schema float). */
int ckpt__config_float_value(const char *text, double *out);

#endif
