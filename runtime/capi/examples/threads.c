/* Lathe's C API from several threads at once on one model.
 *
 *   threads MODEL IN.bin OUT.bin
 *
 * Loads MODEL (any format `lathe` reads, or a `.lathe` artifact), lists its inputs and
 * outputs, and reads its one f32 input from IN.bin (raw little-endian floats; a dimension the
 * model leaves open is taken as 1). Runs it once with runtime-owned results, then from 4
 * threads at once, 5 calls each, into caller-owned buffers, checking that every call gives
 * the same bytes. Writes the first output's bytes to OUT.bin and prints "ok". */
#include "lathe.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define CALLS 5

static LatheModel *model;
static LatheTensorView input;
static const char *output_name;
static const void *expected;
static size_t expected_bytes;

static void die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, lathe_last_error());
    exit(1);
}

static void *worker(void *arg) {
    (void)arg;
    void *buf = malloc(expected_bytes);
    for (int k = 0; k < CALLS; k++) {
        LatheOutputBuffer out = {output_name, LATHE_DTYPE_F32, buf, expected_bytes, 0};
        if (lathe_model_run_into(model, &input, 1, &out, 1) != LATHE_STATUS_OK) die("run_into");
        if (out.written != expected_bytes || memcmp(buf, expected, expected_bytes) != 0) {
            fprintf(stderr, "a thread got other results\n");
            exit(1);
        }
    }
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL IN.bin OUT.bin\n", argv[0]);
        return 2;
    }
    if (lathe_model_load(argv[1], 0, &model) != LATHE_STATUS_OK) die("load");
    if (lathe_model_input_count(model) != 1 || lathe_model_input_dtype(model, 0) != LATHE_DTYPE_F32) {
        fprintf(stderr, "this example runs models of one f32 input\n");
        return 1;
    }

    /* The input's declared shape, open dimensions taken as 1. */
    size_t rank = lathe_model_input_rank(model, 0), count = 1;
    int64_t *dims = calloc(rank ? rank : 1, sizeof(int64_t));
    const int64_t *declared = lathe_model_input_dims(model, 0);
    printf("input %s: f32[", lathe_model_input_name(model, 0));
    for (size_t i = 0; i < rank; i++) {
        dims[i] = declared[i] < 0 ? 1 : declared[i];
        count *= (size_t)dims[i];
        printf(i ? ",%lld" : "%lld", (long long)declared[i]);
    }
    printf("]\n");
    for (size_t i = 0; i < lathe_model_output_count(model); i++)
        printf("output %s\n", lathe_model_output_name(model, i));

    float *x = malloc(count * sizeof(float));
    FILE *in = fopen(argv[2], "rb");
    if (!in || fread(x, sizeof(float), count, in) != count) {
        fprintf(stderr, "%s: cannot read %zu floats\n", argv[2], count);
        return 1;
    }
    fclose(in);
    input = (LatheTensorView){lathe_model_input_name(model, 0), LATHE_DTYPE_F32, dims, rank, x,
                              count * sizeof(float)};

    LatheOutputs *outs;
    if (lathe_model_run(model, &input, 1, &outs) != LATHE_STATUS_OK) die("run");
    output_name = lathe_outputs_name(outs, 0);
    expected = lathe_outputs_data(outs, 0);
    expected_bytes = lathe_outputs_bytes(outs, 0);
    if (lathe_outputs_dtype(outs, 0) != LATHE_DTYPE_F32) {
        fprintf(stderr, "output %s is not f32\n", output_name);
        return 1;
    }

    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);

    FILE *f = fopen(argv[3], "wb");
    if (!f || fwrite(expected, 1, expected_bytes, f) != expected_bytes) {
        fprintf(stderr, "%s: cannot write\n", argv[3]);
        return 1;
    }
    fclose(f);
    printf("%s: %d threads x %d calls of %s, %zu bytes each; ok\n", argv[1], THREADS, CALLS,
           output_name, expected_bytes);
    lathe_outputs_free(outs);
    lathe_model_free(model);
    free(x);
    free(dims);
    return 0;
}
