/*
 * fastpath_ext.c - a minimal CPython extension for shmcomm's 64-byte hot path, for the FFI-cost
 * experiment (ffi_cost.py builds it in a temporary directory). NOT part of the package: it exists
 * to measure what one Python-to-C call per send and per receive costs without cffi's ABI mode.
 *
 * Handles travel as ints (the address of the shmc_*_t), taken from a shmcomm endpoint's cffi handle.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <time.h>

#include "shmcomm.h"

/* send(pub, data: bytes) -> 0 or a negative code: shmc_pub_try_send */
static PyObject *fp_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) return PyErr_Format(PyExc_TypeError, "send(pub, data)");
    shmc_pub_t *pub = PyLong_AsVoidPtr(args[0]);
    char *buf;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(args[1], &buf, &len) < 0) return NULL;
    return PyLong_FromLong(shmc_pub_try_send(pub, buf, (size_t)len));
}

/* recv(sub) -> bytes or None: shmc_sub_next(sub, 0) + one copy into a new bytes object */
static PyObject *fp_recv(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 1) return PyErr_Format(PyExc_TypeError, "recv(sub)");
    shmc_sub_t *sub = PyLong_AsVoidPtr(args[0]);
    int64_t n = shmc_sub_next(sub, 0);
    if (n < 0) {
        if (n == SHMC_EAGAIN) Py_RETURN_NONE;
        return PyErr_Format(PyExc_OSError, "shmc_sub_next: %s", shmc_strerror((int)n));
    }
    const void *data;
    size_t cap;
    shmc_sub_buffer(sub, &data, &cap);
    return PyBytes_FromStringAndSize(data, (Py_ssize_t)n);
}

/* recv_wait(sub, timeout_ns) -> bytes or None: waits in C (spin, then futex) without the GIL */
static PyObject *fp_recv_wait(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) return PyErr_Format(PyExc_TypeError, "recv_wait(sub, timeout_ns)");
    shmc_sub_t *sub = PyLong_AsVoidPtr(args[0]);
    long long t = PyLong_AsLongLong(args[1]);
    int64_t n = shmc_sub_next(sub, 0);
    if (n == SHMC_EAGAIN && t) {
        Py_BEGIN_ALLOW_THREADS
        n = shmc_sub_next(sub, t);
        Py_END_ALLOW_THREADS
    }
    if (n < 0) {
        if (n == SHMC_EAGAIN || n == SHMC_ETIMEDOUT) Py_RETURN_NONE;
        return PyErr_Format(PyExc_OSError, "shmc_sub_next: %s", shmc_strerror((int)n));
    }
    const void *data;
    size_t cap;
    shmc_sub_buffer(sub, &data, &cap);
    return PyBytes_FromStringAndSize(data, (Py_ssize_t)n);
}

/* c_pairs(pub, sub, n) -> ns per (send + receive) pair, all in C: libshm's own cost */
static PyObject *fp_c_pairs(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) return PyErr_Format(PyExc_TypeError, "c_pairs(pub, sub, n)");
    shmc_pub_t *pub = PyLong_AsVoidPtr(args[0]);
    shmc_sub_t *sub = PyLong_AsVoidPtr(args[1]);
    long n = PyLong_AsLong(args[2]);
    char msg[64] = {0};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        shmc_pub_try_send(pub, msg, sizeof msg);
        if (shmc_sub_next(sub, 0) != (int64_t)sizeof msg) return PyErr_Format(PyExc_RuntimeError, "lost");
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    return PyFloat_FromDouble(ns / (double)n);
}

static PyMethodDef methods[] = {
    {"send", (PyCFunction)(void (*)(void))fp_send, METH_FASTCALL, "shmc_pub_try_send"},
    {"recv", (PyCFunction)(void (*)(void))fp_recv, METH_FASTCALL, "shmc_sub_next(sub, 0) -> bytes"},
    {"recv_wait", (PyCFunction)(void (*)(void))fp_recv_wait, METH_FASTCALL, "shmc_sub_next waiting, no GIL"},
    {"c_pairs", (PyCFunction)(void (*)(void))fp_c_pairs, METH_FASTCALL, "send+receive pairs in C"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "shmc_fastpath", NULL, -1, methods};

PyMODINIT_FUNC PyInit_shmc_fastpath(void) { return PyModule_Create(&module); }
