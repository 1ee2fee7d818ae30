/* Lathe's C API from several threads at once on one model.
 *
 *   threads MODEL INPUT D0,D1,... OUT.bin
 *
 * Loads MODEL (any format `lathe` reads, or a `.lathe` artifact), fills the f32 input named
 * INPUT of the given dims with a fixed ramp, runs it once with runtime-owned results, then
 * from 4 threads at once, 5 calls each, into caller-owned buffers, and checks that every call
 * gives the same bytes. Writes the first output's bytes to OUT.bin and prints "ok". */
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
        LatheOutputBuffer out = {output_name, buf, expected_bytes, 0};
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
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL INPUT D0,D1,... OUT.bin\n", argv[0]);
        return 2;
    }
    if (lathe_model_load(argv[1], 0, &model) != LATHE_STATUS_OK) die("load");
    int64_t dims[8];
    size_t rank = 0, count = 1;
    for (char *d = strtok(argv[3], ","); d && rank < 8; d = strtok(NULL, ",")) {
        dims[rank] = atoll(d);
        count *= (size_t)dims[rank++];
    }
    float *x = malloc(count * sizeof(float));
    for (size_t i = 0; i < count; i++) x[i] = (float)(i % 17) * 0.0625f - 0.5f;
    input = (LatheTensorView){argv[2], LATHE_D_TYPE_F32, dims, rank, x, count * sizeof(float)};

    LatheOutputs *outs;
    if (lathe_model_run(model, &input, 1, &outs) != LATHE_STATUS_OK) die("run");
    output_name = lathe_model_output_name(model, 0);
    expected = lathe_outputs_data(outs, 0);
    expected_bytes = lathe_outputs_bytes(outs, 0);

    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);

    FILE *f = fopen(argv[4], "wb");
    if (!f || fwrite(expected, 1, expected_bytes, f) != expected_bytes) return 1;
    fclose(f);
    printf("%s: %zu inputs, %zu outputs; %s %zu bytes; ok\n", argv[1], lathe_model_input_count(model),
           lathe_model_output_count(model), output_name, expected_bytes);
    lathe_outputs_free(outs);
    lathe_model_free(model);
    free(x);
    return 0;
}
