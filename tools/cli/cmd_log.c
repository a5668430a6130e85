/* cmd_log.c - `ckpt log RUN`: the lineage tree; rollbacks make branches. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct node {
    long long id, parent, epoch, step, created;
    int on_line; /* on the head's ancestry */
    int is_head;
    size_t *kids;
    size_t nkids;
} node;

static node *nodes;
static size_t nnodes;
static int json_first = 1;

static void print_node(const node *n, const char *prefix, int json)
{
    char time[32];
    fmt_time_us(n->created, time, sizeof time);
    if (json) {
        printf("%s\n  {\"epoch\": %lld, \"step\": %lld, \"id\": %lld, \"parent\": %lld,"
               " \"time\": \"%s\", \"is_head\": %s, \"abandoned\": %s}",
               json_first ? "" : ",", n->epoch, n->step, n->id, n->parent, time,
               n->is_head ? "true" : "false", n->on_line ? "false" : "true");
        json_first = 0;
        return;
    }
    printf("%s%s epoch %-4lld step %-8lld %s%s\n", prefix, n->on_line ? "*" : "o", n->epoch,
           n->step, time, n->is_head ? "  <- head" : (n->on_line ? "" : "  (abandoned)"));
}

/* Prints the chain from node i: side branches indented first, then the
 * main child (on the head's line, else the newest) at the same level. */
static void walk(size_t i, const char *prefix, int json)
{
    for (;;) {
        const node *n = &nodes[i];
        print_node(n, prefix, json);
        if (!n->nkids)
            return;
        /* The child on the head's line continues this column; on an
         * abandoned line the newest child does. Every other child is
         * drawn as an indented side branch. */
        size_t main = SIZE_MAX;
        for (size_t k = 0; k < n->nkids; k++)
            if (nodes[n->kids[k]].on_line)
                main = n->kids[k];
        if (main == SIZE_MAX && !n->on_line)
            main = n->kids[n->nkids - 1];
        for (size_t k = 0; k < n->nkids; k++) {
            if (n->kids[k] == main)
                continue;
            size_t len = strlen(prefix);
            char *sub = malloc(len + 3);
            memcpy(sub, prefix, len);
            memcpy(sub + len, "| ", 3);
            if (!json)
                printf("%s|\\\n", prefix);
            walk(n->kids[k], sub, json);
            if (!json && (main != SIZE_MAX || k + 1 < n->nkids))
                printf("%s|\n", prefix);
            free(sub);
        }
        if (main == SIZE_MAX)
            return;
        i = main;
    }
}

int cmd_log(cli *c)
{
    const char *pos[1];
    int np = cli_getopt(c, "log", NULL, pos, 1);
    if (np < 0)
        return EXIT_USAGE;
    if (np == 0)
        return cli_usage("log", "missing RUN");
    const char *run = pos[0];
    ckpt_checkpoint_info head;
    int rc = ckpt_head(cli_store, run, &head);
    if (rc == CKPT_ENOCHECKPOINT) {
        printf(c->json ? "[]\n" : "run %s has no checkpoint yet\n", run);
        return EXIT_OK;
    }
    if (rc)
        return cli_fail("log", rc);
    sqlite3 *db = ckpt_store_db(cli_store);
    sqlite3_stmt *st;
    const char *sql =
        "WITH RECURSIVE anc(id) AS (SELECT head_id FROM runs WHERE name = ?1"
        " UNION ALL SELECT c.parent_id FROM anc JOIN checkpoints c ON c.id = anc.id"
        " WHERE c.parent_id IS NOT NULL)"
        " SELECT c.id, coalesce(c.parent_id, 0), c.epoch, c.step, c.created_at, c.id IN anc"
        " FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.name = ?1 ORDER BY c.id";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "ckpt log: %s\n", sqlite3_errmsg(db));
        return EXIT_FAIL;
    }
    sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    size_t cap = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (nnodes == cap) {
            cap = cap ? 2 * cap : 64;
            nodes = realloc(nodes, cap * sizeof *nodes);
        }
        node *n = &nodes[nnodes++];
        memset(n, 0, sizeof *n);
        n->id = sqlite3_column_int64(st, 0);
        n->parent = sqlite3_column_int64(st, 1);
        n->epoch = sqlite3_column_int64(st, 2);
        n->step = sqlite3_column_int64(st, 3);
        n->created = sqlite3_column_int64(st, 4);
        n->on_line = sqlite3_column_int(st, 5);
        n->is_head = n->id == head.id;
    }
    sqlite3_finalize(st);
    /* Ids ascend, parents precede children: link by binary search. */
    for (size_t i = 0; i < nnodes; i++) {
        if (!nodes[i].parent)
            continue;
        size_t lo = 0, hi = i;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (nodes[mid].id < nodes[i].parent)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < i && nodes[lo].id == nodes[i].parent) {
            node *p = &nodes[lo];
            p->kids = realloc(p->kids, (p->nkids + 1) * sizeof *p->kids);
            p->kids[p->nkids++] = i;
        } else {
            nodes[i].parent = 0; /* parent in another run (imported) */
        }
    }
    if (c->json)
        printf("[");
    else
        printf("run %s (* current line, o abandoned)\n", run);
    for (size_t i = 0; i < nnodes; i++)
        if (!nodes[i].parent)
            walk(i, "", c->json);
    if (c->json)
        printf("%s]\n", json_first ? "" : "\n");
    for (size_t i = 0; i < nnodes; i++)
        free(nodes[i].kids);
    free(nodes);
    return EXIT_OK;
}
