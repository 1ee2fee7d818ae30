/* Runs a model compiled by `lathe compile --emit obj`: reads each input's raw bytes from a
 * file, runs the model on THREADS threads at once (each with its own scratch and outputs),
 * checks every thread got the same bytes, and writes each output's raw bytes to a file.
 *
 * Build, for a model compiled with `--prefix mlp --header mlp.h`:
 *   cc -O2 -DMODEL=mlp -DMODEL_UPPER=MLP -DMODEL_HEADER='"mlp.h"' run_model.c mlp.o \
 *      liblathe_kernels.a -lpthread -ldl -lm -o run_mlp
 * Run: ./run_mlp THREADS in_0.bin ... out_0.bin ...
 * THREADS = 0 makes one call with its scratch misaligned on purpose, to show an error.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include MODEL_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define RUN CAT(MODEL, _run)
#define NUM_INPUTS CAT(MODEL_UPPER, _NUM_INPUTS)
#define NUM_OUTPUTS CAT(MODEL_UPPER, _NUM_OUTPUTS)
#define SCRATCH_BYTES CAT(MODEL_UPPER, _SCRATCH_BYTES)

static const size_t input_bytes[] = CAT(MODEL_UPPER, _INPUT_BYTES);
static const size_t output_bytes[] = CAT(MODEL_UPPER, _OUTPUT_BYTES);
static const char *const input_names[] = CAT(MODEL_UPPER, _INPUT_NAMES);

struct call {
    int misalign;
    const void *inputs[NUM_INPUTS + 1];
    void *outputs[NUM_OUTPUTS + 1];
    int status;
    char error[512];
};

static void *read_file(const char *path, size_t want) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "run_model: cannot open %s\n", path);
        exit(2);
    }
    char *data = malloc(want + 1);
    size_t got = fread(data, 1, want + 1, f);
    fclose(f);
    if (got != want) {
        fprintf(stderr, "run_model: %s holds %zu bytes, and the input needs %zu\n", path, got, want);
        exit(2);
    }
    return data;
}

static void *call_model(void *arg) {
    struct call *c = arg;
    void *scratch = NULL;
    if (posix_memalign(&scratch, 64, SCRATCH_BYTES + 64) != 0) {
        c->status = -1;
        snprintf(c->error, sizeof c->error, "out of memory for scratch");
        return NULL;
    }
    c->status = RUN(c->inputs, c->outputs, (char *)scratch + c->misalign);
    if (c->status != 0) {
        const char *e = lathe_kernels_last_error();
        snprintf(c->error, sizeof c->error, "%s", e ? e : "(no message)");
    }
    free(scratch);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2 + NUM_INPUTS + NUM_OUTPUTS) {
        fprintf(stderr, "usage: %s THREADS", argv[0]);
        for (int i = 0; i < NUM_INPUTS; i++) fprintf(stderr, " %s.bin", input_names[i]);
        for (int j = 0; j < NUM_OUTPUTS; j++) fprintf(stderr, " out_%d.bin", j);
        fprintf(stderr, "\n");
        return 2;
    }
    int threads = atoi(argv[1]);
    int misalign = threads == 0;
    if (threads < 1 || threads > 64) threads = 1;
    const void *inputs[NUM_INPUTS + 1];
    for (int i = 0; i < NUM_INPUTS; i++) inputs[i] = read_file(argv[2 + i], input_bytes[i]);
    struct call *calls = calloc((size_t)threads, sizeof *calls);
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    for (int t = 0; t < threads; t++) {
        calls[t].misalign = misalign;
        memcpy(calls[t].inputs, inputs, sizeof inputs);
        for (int j = 0; j < NUM_OUTPUTS; j++) calls[t].outputs[j] = calloc(1, output_bytes[j] + 1);
        pthread_create(&ids[t], NULL, call_model, &calls[t]);
    }
    for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    for (int t = 0; t < threads; t++) {
        if (calls[t].status != 0) {
            fprintf(stderr, "run_model: thread %d: error %d: %s\n", t, calls[t].status, calls[t].error);
            return 1;
        }
        for (int j = 0; j < NUM_OUTPUTS; j++) {
            if (memcmp(calls[t].outputs[j], calls[0].outputs[j], output_bytes[j]) != 0) {
                fprintf(stderr, "run_model: thread %d's output %d differs from thread 0's\n", t, j);
                return 1;
            }
        }
    }
    for (int j = 0; j < NUM_OUTPUTS; j++) {
        const char *path = argv[2 + NUM_INPUTS + j];
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(calls[0].outputs[j], 1, output_bytes[j], f) != output_bytes[j]) {
            fprintf(stderr, "run_model: cannot write %s\n", path);
            return 2;
        }
        fclose(f);
    }
    return 0;
}
