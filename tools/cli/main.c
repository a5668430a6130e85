/*
 * main.c - `ckpt [--db PATH] COMMAND [ARGS]`: global options, the command
 * table, --help, and opening the store the way each command needs it.
 * Exit codes: 0 ok, 1 failure, 2 usage.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

ckpt_store *cli_store;

static const command commands[] = {
    {"init", cmd_init, "init [--codec auto|raw|planes] [--level N] [--chunk-mib N]",
     "create an empty store (or check an existing one)",
     "Creates PATH and PATH-chunks if they do not exist. On an existing store it\n"
     "upgrades the schema if needed and reports what it found. --codec, --level\n"
     "(zstd 1..19) and --chunk-mib save the store's defaults for later saves; a\n"
     "run can override codec and level in its YAML config: ckpt: {codec: raw}.\n", 2},
    {"runs", cmd_runs, "runs [--json]", "list runs with status, checkpoints and latest metrics",
     "One row per run: name, status (new, running, finished, interrupted: its process\n"
     "died without finishing), number of checkpoints, last epoch, head (EPOCH@STEP),\n"
     "creation time and the latest value of each metric on the current line.\n", 1},
    {"list", cmd_list, "list [RUN] [--json]", "list checkpoints",
     "One row per checkpoint: run, epoch, step, time, logical and stored size, that\n"
     "epoch's metrics, '*' for the head and 'abandoned' for checkpoints left on a\n"
     "branch by a rollback.\n", 1},
    {"show", cmd_show, "show REF [--json]", "show a checkpoint's tensors",
     "REF is RUN (the run's head) or RUN@EPOCH (the latest step of that epoch).\n"
     "Prints name, kind, dtype, shape, bytes and content hash of every tensor.\n"
     "--json prints {run, epoch, step, ..., tensors: [{name, kind, dtype, shape,\n"
     "nbytes, hash}]}.\n", 1},
    {"restore", cmd_restore, "restore REF [-o FILE.safetensors]",
     "export a checkpoint, or roll the run back to it",
     "With -o: writes the checkpoint as a safetensors file (run, epoch, step and\n"
     "config in __metadata__), atomically (temporary file, fsync, rename).\n"
     "Without -o: moves the run's head to REF so the next resume continues from it.\n"
     "Later checkpoints are kept and shown as an abandoned branch.\n", 3},
    {"import", cmd_import, "import FILE.safetensors --run RUN --epoch N [--step S]",
     "store a safetensors file as a checkpoint",
     "Validates the whole file first (header, JSON, dtypes, shapes, offsets, length);\n"
     "a bad file is refused and the store is left unchanged. The run is created if\n"
     "missing. --step defaults to the epoch.\n", 2},
    {"metrics", cmd_metrics, "metrics RUN [--name NAME] [--all] [--json]", "print a run's metrics",
     "A table with one row per step and one column per metric (or, with --name, the\n"
     "values of one metric). Only the current line is shown; --all adds values left\n"
     "on abandoned branches (marked).\n", 1},
    {"verify", cmd_verify, "verify [REF] [--json]", "check the store for damage",
     "Runs SQLite's integrity check on both files and checks every chunk of every\n"
     "checkpoint (or of REF: RUN for all of the run's checkpoints, RUN@EPOCH for one)\n"
     "against its hash. Names every damaged tensor; exits 1 if anything is damaged.\n", 1},
    {"prune", cmd_prune, "prune RUN@EPOCH... [--no-gc] [--json]", "delete checkpoints and free their space",
     "Deletes the given checkpoints (never a run's head: roll back first), then frees\n"
     "the chunks nothing refers to. A chunk used by a later checkpoint, or as the\n"
     "base of a delta one uses, stays: deleting never breaks another checkpoint.\n"
     "Metrics stay. Fails without changing anything while a save or restore runs.\n", 3},
    {"gc", cmd_gc, "gc [--json]", "free chunks that nothing refers to",
     "Frees the chunks no checkpoint uses (left by deletions or by saves that\n"
     "crashed). Fails without changing anything while a save or restore runs.\n", 3},
    {"log", cmd_log, "log RUN [--json]", "draw a run's lineage with its branches",
     "Draws the tree of checkpoints: rollbacks create branches; the head is marked\n"
     "and abandoned checkpoints are labelled.\n", 1},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: ckpt [--db PATH] COMMAND [ARGS]\n\n"
               "Training runs, checkpoints and metrics in one SQLite store.\n"
               "PATH defaults to $CKPT_DB, then ./ckpt.db.\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nA checkpoint reference REF is RUN (the head) or RUN@EPOCH.\n"
               "Every command takes --help; data commands take --json.\n"
               "Exit codes: 0 ok, 1 failure, 2 usage.\n");
}

static void command_help(const command *cmd)
{
    printf("usage: ckpt [--db PATH] %s\n\n%s.\n\n%s", cmd->usage, cmd->summary, cmd->help);
}

ckpt_store *cli_open(cli *c, int mode)
{
    ckpt_open_opts o = {0, 0, CKPT_DURABLE_FULL};
    if (mode == 1)
        o.flags = CKPT_OPEN_READONLY;
    else if (mode == 3)
        o.flags = CKPT_OPEN_NOCREATE;
    ckpt_store *s;
    int rc = ckpt_open(&s, c->db_path, &o);
    if (rc) {
        fprintf(stderr, "ckpt: %s\n", ckpt_errmsg());
        return NULL;
    }
    return s;
}

int main(int argc, char **argv)
{
    cli c = {0};
    c.db_path = getenv("CKPT_DB");
    if (!c.db_path || !*c.db_path)
        c.db_path = "ckpt.db";
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--db") == 0) {
            if (i + 1 >= argc)
                return cli_usage(NULL, "--db needs a PATH");
            c.db_path = argv[++i];
        } else if (strncmp(argv[i], "--db=", 5) == 0) {
            c.db_path = argv[i] + 5;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("ckpt %s\n", CKPT_VERSION_STRING);
            return EXIT_OK;
        } else {
            return cli_usage(NULL, "unknown option '%s'", argv[i]);
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const command *cmd = NULL;
    for (size_t k = 0; k < NCOMMANDS; k++)
        if (strcmp(argv[i], commands[k].name) == 0)
            cmd = &commands[k];
    if (!cmd) {
        if (strcmp(argv[i], "help") == 0) {
            usage(stdout);
            return EXIT_OK;
        }
        return cli_usage(NULL, "unknown command '%s'", argv[i]);
    }
    /* Global options may also follow the command; --help anywhere wins. */
    char **args = calloc((size_t)argc, sizeof *args);
    if (!args)
        return EXIT_FAIL;
    int n = 0;
    for (int k = i + 1; k < argc; k++) {
        if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
            command_help(cmd);
            free(args);
            return EXIT_OK;
        }
        if (strcmp(argv[k], "--db") == 0 && k + 1 < argc) {
            c.db_path = argv[++k];
        } else if (strcmp(argv[k], "--json") == 0) {
            c.json = 1;
        } else {
            args[n++] = argv[k];
        }
    }
    c.argc = n;
    c.argv = args;
    int rc = EXIT_OK;
    if (cmd->open) {
        cli_store = cli_open(&c, cmd->open);
        if (!cli_store) {
            free(args);
            return EXIT_FAIL;
        }
    }
    rc = cmd->fn(&c);
    if (cli_store && ckpt_close(cli_store) != CKPT_OK) {
        fprintf(stderr, "ckpt %s: %s\n", cmd->name, ckpt_errmsg());
        rc = EXIT_FAIL;
    }
    free(args);
    return rc;
}
