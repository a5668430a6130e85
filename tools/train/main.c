/*
 * main.c - ckpt-train: trains an MLP on Fashion-MNIST and keeps its whole
 * history in a ckpt store: the config with the run, metrics every epoch, and
 * a checkpoint from which a killed or rolled-back run continues bit for bit.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckpt.h"
#include "data.h"
#include "mlp.h"
#include "state.h"
#include "trainconf.h"

#define EXIT_USAGE 2
#define MAX_CONFIG_BYTES (1u << 20)

static const char usage_text[] =
    "usage: ckpt-train --db PATH --run NAME --config FILE.yaml [--resume] [--epochs N]\n"
    "\n"
    "Trains a multilayer perceptron on Fashion-MNIST with Adam, logging metrics\n"
    "(train_loss, train_acc, test_loss, test_acc, lr, epoch_seconds) every epoch and\n"
    "committing a checkpoint (weights, Adam state, RNG, data order) every\n"
    "train.checkpoint_every epochs and at the end, plus one at epoch 0 before training.\n"
    "\n"
    "  --db PATH        the ckpt store (created if absent)\n"
    "  --run NAME       the run to start or continue\n"
    "  --config FILE    YAML config (see tools/configs/fashion-mlp.yaml for the keys);\n"
    "                   stored with the run when the run is created\n"
    "  --resume         continue the run from its head checkpoint; a run that does not\n"
    "                   exist yet is started (then --config is needed). The run keeps\n"
    "                   the config it was started with: a --config that differs from it\n"
    "                   is refused\n"
    "  --epochs N       train until epoch N instead of train.epochs\n"
    "  --help           this text\n"
    "\n"
    "Without --resume, a run name that already exists is an error. A resumed run ends\n"
    "bit-identical to one that was never interrupted (with train.save_optimizer true).\n"
    "\n"
    "Exit status: 0 done; 1 failure (dataset, store, existing run, unusable\n"
    "checkpoint); 2 bad command line or config.\n";

typedef struct options {
    const char *db, *run, *config;
    int resume;
    int64_t epochs; /* 0: from the config */
} options;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int usage_error(const char *fmt, ...) TR_PRINTF(1, 2);
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ckpt-train: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nrun 'ckpt-train --help' for usage\n");
    return EXIT_USAGE;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **target = NULL;
        const char *value = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(a, "--resume") == 0) {
            o->resume = 1;
            continue;
        }
        static const char *const names[] = {"--db", "--run", "--config", "--epochs"};
        int which = -1;
        for (int k = 0; k < 4; k++) {
            size_t len = strlen(names[k]);
            if (strncmp(a, names[k], len) == 0 && (a[len] == '\0' || a[len] == '=')) {
                which = k;
                value = a[len] == '=' ? a + len + 1 : NULL;
                break;
            }
        }
        if (which < 0)
            return usage_error("unknown argument %s", a);
        if (value == NULL) {
            if (i + 1 >= argc)
                return usage_error("%s needs a value", a);
            value = argv[++i];
        }
        switch (which) {
        case 0: target = &o->db; break;
        case 1: target = &o->run; break;
        case 2: target = &o->config; break;
        default: {
            char *end;
            errno = 0;
            long long n = strtoll(value, &end, 10);
            if (errno != 0 || end == value || *end != '\0' || n < 1 || n > TR_MAX_EPOCHS)
                return usage_error("--epochs: %s is not a number of epochs (1..1000000)", value);
            o->epochs = n;
            continue;
        }
        }
        if (*value == '\0')
            return usage_error("%s needs a non-empty value", names[which]);
        *target = value;
    }
    if (o->db == NULL)
        return usage_error("%s", "--db PATH is required");
    if (o->run == NULL)
        return usage_error("%s", "--run NAME is required");
    if (o->config == NULL && !o->resume)
        return usage_error("%s", "--config FILE.yaml is required to start a run");
    return -1;
}

/* Reads a whole file of at most MAX_CONFIG_BYTES, NUL-terminated. */
static int read_config_file(const char *path, char **out, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "ckpt-train: cannot open config %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(MAX_CONFIG_BYTES + 1);
    if (buf == NULL) {
        fclose(f);
        fprintf(stderr, "ckpt-train: out of memory reading %s\n", path);
        return -1;
    }
    size_t len = fread(buf, 1, MAX_CONFIG_BYTES + 1, f);
    int err = ferror(f);
    fclose(f);
    if (err) {
        fprintf(stderr, "ckpt-train: cannot read config %s\n", path);
        free(buf);
        return -1;
    }
    if (len > MAX_CONFIG_BYTES) {
        fprintf(stderr, "ckpt-train: config %s is larger than %u bytes\n", path,
                MAX_CONFIG_BYTES);
        free(buf);
        return -1;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}

static int log_metric(ckpt_store *s, const char *run, const char *name, const tr_state *st,
                      double v)
{
    int rc = ckpt_metric_log(s, run, name, st->epoch, st->step, v);
    if (rc != CKPT_OK) {
        fprintf(stderr, "ckpt-train: cannot log metric %s of epoch %" PRId64 ": %s\n", name,
                st->epoch, ckpt_errmsg());
        return -1;
    }
    return 0;
}

/* Trains from st's position up to `epochs` epochs, logging and committing
 * as it goes. Returns 0 or -1 (message printed). */
static int train_loop(ckpt_store *s, const char *run, const tr_config *c, int64_t epochs,
                      tr_state *st, const tr_dataset *train, const tr_dataset *test)
{
    const tr_adam opt = {c->lr, c->beta1, c->beta2, c->eps};
    const size_t batch = (size_t)c->batch_size;
    while (st->epoch < epochs) {
        double t0 = now_seconds();
        /* An epoch starts by reshuffling the previous order with the saved
         * RNG, so the permutation depends only on the checkpointed state. */
        if ((size_t)st->position >= st->n) {
            tr_rng_shuffle(&st->rng, st->order, st->n);
            st->position = 0;
            st->loss_sum = 0.0;
            st->correct = 0;
        }
        while ((size_t)st->position < st->n) {
            size_t left = st->n - (size_t)st->position;
            size_t nb = left < batch ? left : batch;
            tr_mlp_train_batch(&st->mlp, train, st->order + st->position, nb, &opt,
                               &st->loss_sum, &st->correct);
            st->position += (int64_t)nb;
            st->step++;
        }
        st->epoch++;
        double test_loss, test_acc;
        tr_mlp_evaluate(&st->mlp, test, &test_loss, &test_acc);
        double train_loss = st->loss_sum / (double)st->n;
        double train_acc = (double)st->correct / (double)st->n;
        double secs = now_seconds() - t0;

        /* Metrics first: the commit below flushes them, so an epoch's
         * metrics and its checkpoint land together. */
        if (log_metric(s, run, "train_loss", st, train_loss) != 0 ||
            log_metric(s, run, "train_acc", st, train_acc) != 0 ||
            log_metric(s, run, "test_loss", st, test_loss) != 0 ||
            log_metric(s, run, "test_acc", st, test_acc) != 0 ||
            log_metric(s, run, "lr", st, c->lr) != 0 ||
            log_metric(s, run, "epoch_seconds", st, secs) != 0)
            return -1;

        printf("epoch %3" PRId64 "/%" PRId64 "  train loss %.4f acc %.4f  test loss %.4f acc %.4f"
               "  %.2f s",
               st->epoch, epochs, train_loss, train_acc, test_loss, test_acc, secs);
        if (st->epoch % c->checkpoint_every == 0 || st->epoch == epochs) {
            int64_t id;
            uint64_t bytes;
            double tc = now_seconds();
            if (tr_state_save(s, run, st, c->save_optimizer, &id, &bytes) != 0) {
                printf("\n");
                return -1;
            }
            printf("  checkpoint %" PRId64 " (%.1f MB, %.2f s)", id, (double)bytes / 1e6,
                   now_seconds() - tc);
        } else if (ckpt_metrics_flush(s) != CKPT_OK) {
            printf("\n");
            fprintf(stderr, "ckpt-train: cannot write the metrics of epoch %" PRId64 ": %s\n",
                    st->epoch, ckpt_errmsg());
            return -1;
        }
        printf("\n");
        fflush(stdout);
    }
    return 0;
}

/* Works out the run's config: the stored one for an existing run (refusing
 * a --config that differs), else the file's. *exists says whether the run
 * is there. Returns -1 to go on, else the exit status. */
static int settle_config(ckpt_store *s, const options *o, const char *file_yaml,
                         const tr_config *file_cfg, tr_config *cfg, int *exists)
{
    char *stored = NULL;
    int rc = ckpt_run_config(s, o->run, &stored);
    if (rc == CKPT_ENOTFOUND) {
        *exists = 0;
        if (file_yaml == NULL) {
            fprintf(stderr, "ckpt-train: run %s does not exist in %s; give --config to start it\n",
                    o->run, o->db);
            return EXIT_USAGE;
        }
        *cfg = *file_cfg;
        return -1;
    }
    if (rc != CKPT_OK) {
        fprintf(stderr, "ckpt-train: cannot look up run %s in %s: %s\n", o->run, o->db,
                ckpt_errmsg());
        return rc == CKPT_EINVAL ? EXIT_USAGE : 1;
    }
    *exists = 1;
    if (!o->resume) {
        ckpt_free(stored);
        fprintf(stderr, "ckpt-train: run %s already exists in %s; pass --resume to continue "
                        "it, or choose another --run\n", o->run, o->db);
        return 1;
    }
    if (stored == NULL) {
        if (file_yaml != NULL) {
            printf("run %s has no stored config; using %s\n", o->run, o->config);
            *cfg = *file_cfg;
        } else {
            printf("run %s has no stored config; using the built-in defaults\n", o->run);
            tr_config_defaults(cfg);
        }
        return -1;
    }
    char source[512];
    snprintf(source, sizeof source, "stored with run %s", o->run);
    tr_config_defaults(cfg);
    rc = tr_config_parse(stored, strlen(stored), source, cfg);
    ckpt_free(stored);
    if (rc != 0)
        return EXIT_USAGE;
    if (file_yaml != NULL) {
        char key[64], va[1100], vb[1100];
        if (tr_config_diff(cfg, file_cfg, key, sizeof key, va, vb, sizeof va)) {
            fprintf(stderr,
                    "ckpt-train: --config %s differs from the config stored with run %s: %s is "
                    "%s there but %s in the file. A run keeps the config it was started with: "
                    "drop --config to continue with the stored one, use --epochs N to train "
                    "longer, or start a new --run\n",
                    o->config, o->run, key, va, vb);
            return EXIT_USAGE;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    options o;
    int status = parse_args(argc, argv, &o);
    if (status >= 0)
        return status;

    char *file_yaml = NULL;
    size_t file_len = 0;
    tr_config file_cfg, cfg;
    tr_config_defaults(&file_cfg);
    if (o.config != NULL) {
        if (read_config_file(o.config, &file_yaml, &file_len) != 0)
            return EXIT_USAGE;
        if (tr_config_parse(file_yaml, file_len, o.config, &file_cfg) != 0) {
            free(file_yaml);
            return EXIT_USAGE;
        }
    }

    ckpt_store *s = NULL;
    tr_dataset train = {0}, test = {0};
    tr_state st;
    int have_state = 0;
    status = 1;
    memset(&st, 0, sizeof st);

    int rc = ckpt_open(&s, o.db, NULL);
    if (rc != CKPT_OK) {
        fprintf(stderr, "ckpt-train: cannot open store %s: %s\n", o.db, ckpt_errmsg());
        goto done;
    }
    int exists = 0;
    int settled = settle_config(s, &o, file_yaml, &file_cfg, &cfg, &exists);
    if (settled >= 0) {
        status = settled;
        goto done;
    }
    int64_t epochs = o.epochs > 0 ? o.epochs : cfg.epochs;

    /* The data is checked before the run is created, so a missing or bad
     * dataset leaves no empty run behind. */
    if (tr_data_load(cfg.data_dir, "train", (size_t)cfg.limit_train, &train) != 0 ||
        tr_data_load(cfg.data_dir, "t10k", (size_t)cfg.limit_test, &test) != 0)
        goto done;

    if (!exists) {
        rc = ckpt_run_create(s, o.run, file_yaml, file_len);
        if (rc == CKPT_EEXISTS) {
            fprintf(stderr, "ckpt-train: run %s was created in %s by another process just now\n",
                    o.run, o.db);
            goto done;
        }
        if (rc != CKPT_OK) {
            fprintf(stderr, "ckpt-train: cannot create run %s: %s\n", o.run, ckpt_errmsg());
            if (rc == CKPT_EINVAL)
                status = EXIT_USAGE;
            goto done;
        }
    }

    if (tr_state_init(&st, cfg.hidden, cfg.nhidden, (size_t)cfg.batch_size, train.n) != 0)
        goto done;
    have_state = 1;

    char shape[256];
    tr_config_shape(&cfg, shape, sizeof shape);
    ckpt_checkpoint_info head;
    rc = ckpt_resume(s, o.run, &head);
    if (rc == CKPT_ENOCHECKPOINT) {
        tr_rng_seed(&st.rng, cfg.seed);
        tr_mlp_glorot(&st.mlp, &st.rng);
        /* Epoch 0 counts as complete, so epoch 1 begins with a shuffle. */
        st.position = (int64_t)st.n;
        printf("run %s: new, network %s (%zu parameters), %zu train / %zu test examples, "
               "training to epoch %" PRId64 "\n",
               o.run, shape, tr_mlp_param_count(&st.mlp), train.n, test.n, epochs);
        int64_t id;
        uint64_t bytes;
        if (tr_state_save(s, o.run, &st, cfg.save_optimizer, &id, &bytes) != 0)
            goto done;
        printf("epoch   0 (initial weights)  checkpoint %" PRId64 " (%.1f MB)\n", id,
               (double)bytes / 1e6);
    } else if (rc == CKPT_OK) {
        int had_optimizer = 0;
        if (tr_state_load(s, o.run, head.id, &st, &had_optimizer) != 0) {
            /* A damaged head: say so and name what to fall back to. */
            if (ckpt_checkpoint_verify(s, head.id, NULL, NULL, NULL) == CKPT_ECORRUPT) {
                ckpt_checkpoint_info ok;
                int lrc = ckpt_last_intact(s, o.run, &ok);
                if (lrc == CKPT_OK)
                    fprintf(stderr,
                            "ckpt-train: the head of run %s (epoch %" PRId64 ", step %" PRId64
                            ") is damaged; the newest intact checkpoint is epoch %" PRId64
                            " (step %" PRId64 "). To continue from it: ckpt --db %s restore "
                            "%s@%" PRId64 "\n",
                            o.run, head.epoch, head.step, ok.epoch, ok.step, o.db, o.run,
                            ok.epoch);
                else
                    fprintf(stderr, "ckpt-train: the head of run %s is damaged and %s\n", o.run,
                            ckpt_errmsg());
            }
            goto done;
        }
        printf("run %s: resuming from checkpoint %" PRId64 " (epoch %" PRId64 ", step %" PRId64
               "), network %s, %zu train / %zu test examples, training to epoch %" PRId64 "\n",
               o.run, head.id, head.epoch, head.step, shape, train.n, test.n, epochs);
        if (!had_optimizer)
            fprintf(stderr, "ckpt-train: warning: run %s was saved without optimizer state "
                            "(train.save_optimizer: false); Adam restarts from zero, so the "
                            "result will differ from an uninterrupted run\n", o.run);
    } else {
        fprintf(stderr, "ckpt-train: cannot resume run %s: %s\n", o.run, ckpt_errmsg());
        goto done;
    }
    fflush(stdout);

    if (st.epoch >= epochs)
        printf("run %s is at epoch %" PRId64 " of %" PRId64 ": nothing to train "
               "(use --epochs N to train longer)\n", o.run, st.epoch, epochs);
    else if (train_loop(s, o.run, &cfg, epochs, &st, &train, &test) != 0)
        goto done;

    rc = ckpt_run_finish(s, o.run);
    if (rc != CKPT_OK) {
        fprintf(stderr, "ckpt-train: cannot mark run %s finished: %s\n", o.run, ckpt_errmsg());
        goto done;
    }
    status = 0;

done:
    if (have_state)
        tr_state_free(&st);
    tr_data_free(&train);
    tr_data_free(&test);
    if (s != NULL && ckpt_close(s) != CKPT_OK && status == 0) {
        fprintf(stderr, "ckpt-train: closing %s: %s\n", o.db, ckpt_errmsg());
        status = 1;
    }
    free(file_yaml);
    return status;
}
