/* The byte work of streams.codec.fastread in C: an Avro binary body read by a plan.

Owns: walking one ``bytes`` body along a *plan*, a tree of tuples that
``streams.codec.fastread`` builds once per writer schema (``_Planner``), and
building the same Python values the Python reader builds. Must not touch:
what a schema means (the plan says it), how decimals and times are made (the
plan carries Python callables for them, so both readers share one rule), or
anything of the pipeline.

A plan node is a tuple whose first item is an opcode (the ``OP_*`` below and
in fastread). Its other items:

    OP_RECORD        (keys: tuple[str], fields: tuple[node])
    OP_OPTIONAL      (node,)                    [null, T]: index byte 0 or 2
    OP_UNION         (nodes: tuple, labels: tuple[str | None])
    OP_ENUM          (symbols: tuple[str],)
    OP_ARRAY         (item node,)
    OP_CACHED_ARRAY  (item node, cache: dict, name: str, item type, cache size)
    OP_MAP           (value node,)
    OP_DECIMAL       (cache: dict, make: callable(bytes) -> Decimal, cache size)
    OP_TIMESTAMP     (make: callable(int) -> datetime,)
    OP_REF           (holder: list,)            a named type defined later (recursion)

Malformed input raises, never reads short: IndexError past the end of the
body (as ``data[pos]`` does), fastread's ``Malformed`` for anything else the
Python reader refuses (the class is handed over by ``configure``), and
UnicodeDecodeError for a string that is not UTF-8. Nesting deeper than
MAX_DEPTH (only a recursive schema allows it) is refused as Malformed.
*/

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

enum {
    OP_NULL = 0, OP_BOOL = 1, OP_LONG = 2, OP_FLOAT = 3, OP_DOUBLE = 4, OP_BYTES = 5,
    OP_STRING = 6, OP_DECIMAL = 7, OP_TIMESTAMP = 8, OP_RECORD = 9, OP_OPTIONAL = 10,
    OP_UNION = 11, OP_ENUM = 12, OP_ARRAY = 13, OP_CACHED_ARRAY = 14, OP_MAP = 15,
    OP_REF = 16
};

#define MAX_DEPTH 500

static PyObject *Malformed = NULL;  /* fastread.Malformed, set by configure() */
static PyObject *str_wire = NULL;   /* "wire" */

typedef struct {
    const unsigned char *buf;
    Py_ssize_t size;
} Body;

static int
past_end(void)
{
    PyErr_SetString(PyExc_IndexError, "index out of range");
    return -1;
}

static int
malformed(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PyObject *text = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (text != NULL) {
        PyErr_SetObject(Malformed ? Malformed : PyExc_ValueError, text);
        Py_DECREF(text);
    }
    return -1;
}

/* Zig-zag varint (Avro int and long), at most 10 bytes and 64 bits. */
static int
read_varint(const Body *in, Py_ssize_t *pos, int64_t *out)
{
    Py_ssize_t p = *pos;
    uint64_t n = 0;
    int shift = 0;
    for (;;) {
        if (p >= in->size)
            return past_end();
        unsigned char b = in->buf[p++];
        n |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            if (shift == 63 && (b & 0x7F) > 1)
                return malformed("varint beyond 64 bits");
            break;
        }
        shift += 7;
        if (shift > 63)
            return malformed("varint longer than 10 bytes");
    }
    *out = (int64_t)(n >> 1) ^ -(int64_t)(n & 1);
    *pos = p;
    return 0;
}

/* A length-prefixed body (bytes, string, decimal): [*start, *pos) after the call. */
static int
read_span(const Body *in, Py_ssize_t *pos, Py_ssize_t *start)
{
    int64_t n;
    if (read_varint(in, pos, &n) < 0)
        return -1;
    Py_ssize_t left = in->size - *pos;
    if (n < 0 || n > left)
        return malformed("expected %lld bytes, %zd left", (long long)n, left);
    *start = *pos;
    *pos += (Py_ssize_t)n;
    return 0;
}

/* The item count of the next block of an array or map (0: the end). */
static int
read_block(const Body *in, Py_ssize_t *pos, int64_t *count)
{
    int64_t n, size;
    if (read_varint(in, pos, &n) < 0)
        return -1;
    if (n < 0) {
        if (n == INT64_MIN)
            return malformed("%s items with %zd bytes left", "9223372036854775808",
                             in->size - *pos);
        n = -n;
        if (read_varint(in, pos, &size) < 0)
            return -1;
    }
    if (n > in->size - *pos)
        return malformed("%lld items with %zd bytes left", (long long)n, in->size - *pos);
    *count = n;
    return 0;
}

static inline long
op_of(PyObject *node)
{
    return PyLong_AsLong(PyTuple_GET_ITEM(node, 0));
}

#define ARG(node, i) PyTuple_GET_ITEM((node), (i))

static PyObject *read_node(PyObject *node, const Body *in, Py_ssize_t *pos, int depth);

static PyObject *
cached(PyObject *cache, PyObject *key, PyObject *make, PyObject *limit)
{
    PyObject *hit = PyDict_GetItemWithError(cache, key);
    if (hit != NULL) {
        Py_INCREF(hit);
        return hit;
    }
    if (PyErr_Occurred())
        return NULL;
    PyObject *value = PyObject_CallOneArg(make, key);
    if (value == NULL)
        return NULL;
    if (PyDict_GET_SIZE(cache) >= PyLong_AsSsize_t(limit))
        PyDict_Clear(cache);
    if (PyDict_SetItem(cache, key, value) < 0) {
        Py_DECREF(value);
        return NULL;
    }
    return value;
}

/* Where a flat record's item ends, without building values; -1 when it cannot say
   (the full reader then reads it and raises its own error). No exception is left set. */
static Py_ssize_t
skip_flat(PyObject *record, const Body *in, Py_ssize_t pos)
{
    PyObject *fields = ARG(record, 2);
    Py_ssize_t count = PyTuple_GET_SIZE(fields);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *field = PyTuple_GET_ITEM(fields, i);
        long op = op_of(field);
        if (op == OP_OPTIONAL) {
            if (pos >= in->size)
                return -1;
            unsigned char b = in->buf[pos++];
            if (b == 0)
                continue;
            if (b != 2)
                return -1;
            field = ARG(field, 1);
            op = op_of(field);
        }
        int64_t n;
        Py_ssize_t start;
        switch (op) {
        case OP_LONG:
        case OP_TIMESTAMP:
            if (read_varint(in, &pos, &n) < 0) {
                PyErr_Clear();
                return -1;
            }
            break;
        case OP_BOOL:
            if (pos >= in->size)
                return -1;
            pos += 1;
            break;
        case OP_STRING:
        case OP_BYTES:
        case OP_DECIMAL:
            if (read_span(in, &pos, &start) < 0) {
                PyErr_Clear();
                return -1;
            }
            break;
        default:
            return -1;
        }
    }
    return pos;
}

/* A copy of a cached item: a new object of its type, naming the same wire bytes. */
static PyObject *
item_copy(PyObject *item_type, PyObject *of, PyObject *wire)
{
    PyObject *copy = PyObject_CallOneArg(item_type, of);
    if (copy == NULL)
        return NULL;
    if (PyObject_SetAttr(copy, str_wire, wire) < 0) {
        Py_DECREF(copy);
        return NULL;
    }
    return copy;
}

static PyObject *
read_cached_array(PyObject *node, const Body *in, Py_ssize_t *pos, int depth)
{
    PyObject *item = ARG(node, 1), *cache = ARG(node, 2), *name = ARG(node, 3);
    PyObject *item_type = ARG(node, 4);
    Py_ssize_t limit = PyLong_AsSsize_t(ARG(node, 5));
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (;;) {
        int64_t n;
        if (read_block(in, pos, &n) < 0)
            goto fail;
        if (n == 0)
            return out;
        for (int64_t k = 0; k < n; k++) {
            Py_ssize_t end = skip_flat(item, in, *pos);
            PyObject *raw = NULL;
            if (end > *pos && end <= in->size) {
                raw = PyBytes_FromStringAndSize((const char *)in->buf + *pos, end - *pos);
                if (raw == NULL)
                    goto fail;
                PyObject *hit = PyDict_GetItemWithError(cache, raw);
                if (hit != NULL) {
                    PyObject *wire = PyObject_GetAttr(hit, str_wire);
                    PyObject *copy = wire ? item_copy(item_type, hit, wire) : NULL;
                    Py_XDECREF(wire);
                    Py_DECREF(raw);
                    if (copy == NULL || PyList_Append(out, copy) < 0) {
                        Py_XDECREF(copy);
                        goto fail;
                    }
                    Py_DECREF(copy);
                    *pos = end;
                    continue;
                }
                if (PyErr_Occurred()) {
                    Py_DECREF(raw);
                    goto fail;
                }
            }
            PyObject *value = read_node(item, in, pos, depth + 1);
            if (value == NULL) {
                Py_XDECREF(raw);
                goto fail;
            }
            if (raw != NULL && *pos == end) {
                if (PyDict_GET_SIZE(cache) >= limit)
                    PyDict_Clear(cache);
                PyObject *wire = PyTuple_Pack(2, name, raw);
                PyObject *kept = wire ? item_copy(item_type, value, wire) : NULL;
                int stored = kept ? PyDict_SetItem(cache, raw, kept) : -1;
                Py_DECREF(value);
                value = stored == 0 ? item_copy(item_type, kept, wire) : NULL;
                Py_XDECREF(kept);
                Py_XDECREF(wire);
                if (value == NULL) {
                    Py_DECREF(raw);
                    goto fail;
                }
            }
            Py_XDECREF(raw);
            int appended = PyList_Append(out, value);
            Py_DECREF(value);
            if (appended < 0)
                goto fail;
        }
    }
fail:
    Py_DECREF(out);
    return NULL;
}

static PyObject *
read_node(PyObject *node, const Body *in, Py_ssize_t *pos, int depth)
{
    int64_t n;
    Py_ssize_t start;
    if (depth > MAX_DEPTH) {
        malformed("values nested deeper than %d", MAX_DEPTH);
        return NULL;
    }
    switch (op_of(node)) {
    case OP_NULL:
        Py_RETURN_NONE;
    case OP_BOOL:
        if (*pos >= in->size) {
            past_end();
            return NULL;
        }
        /* fastavro reads any non-zero byte as True */
        return PyBool_FromLong(in->buf[(*pos)++] != 0);
    case OP_LONG:
        if (read_varint(in, pos, &n) < 0)
            return NULL;
        return PyLong_FromLongLong(n);
    case OP_FLOAT: {
        if (in->size - *pos < 4) {
            malformed("a float needs 4 bytes, %zd left", in->size - *pos);
            return NULL;
        }
        double d = PyFloat_Unpack4((const char *)in->buf + *pos, 1);
        if (d == -1.0 && PyErr_Occurred())
            return NULL;
        *pos += 4;
        return PyFloat_FromDouble(d);
    }
    case OP_DOUBLE: {
        if (in->size - *pos < 8) {
            malformed("a double needs 8 bytes, %zd left", in->size - *pos);
            return NULL;
        }
        double d = PyFloat_Unpack8((const char *)in->buf + *pos, 1);
        if (d == -1.0 && PyErr_Occurred())
            return NULL;
        *pos += 8;
        return PyFloat_FromDouble(d);
    }
    case OP_BYTES:
        if (read_span(in, pos, &start) < 0)
            return NULL;
        return PyBytes_FromStringAndSize((const char *)in->buf + start, *pos - start);
    case OP_STRING:
        if (read_span(in, pos, &start) < 0)
            return NULL;
        return PyUnicode_DecodeUTF8((const char *)in->buf + start, *pos - start, "strict");
    case OP_DECIMAL: {
        if (read_span(in, pos, &start) < 0)
            return NULL;
        PyObject *raw = PyBytes_FromStringAndSize((const char *)in->buf + start,
                                                  *pos - start);
        if (raw == NULL)
            return NULL;
        PyObject *value = cached(ARG(node, 1), raw, ARG(node, 2), ARG(node, 3));
        Py_DECREF(raw);
        return value;
    }
    case OP_TIMESTAMP: {
        if (read_varint(in, pos, &n) < 0)
            return NULL;
        PyObject *micros = PyLong_FromLongLong(n);
        if (micros == NULL)
            return NULL;
        PyObject *value = PyObject_CallOneArg(ARG(node, 1), micros);
        Py_DECREF(micros);
        return value;
    }
    case OP_RECORD: {
        PyObject *keys = ARG(node, 1), *fields = ARG(node, 2);
        Py_ssize_t count = PyTuple_GET_SIZE(fields);
        PyObject *out = _PyDict_NewPresized(count);
        if (out == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *value = read_node(PyTuple_GET_ITEM(fields, i), in, pos, depth + 1);
            if (value == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            int stored = PyDict_SetItem(out, PyTuple_GET_ITEM(keys, i), value);
            Py_DECREF(value);
            if (stored < 0) {
                Py_DECREF(out);
                return NULL;
            }
        }
        return out;
    }
    case OP_OPTIONAL: {
        if (*pos >= in->size) {
            past_end();
            return NULL;
        }
        unsigned char b = in->buf[(*pos)++];
        if (b == 0)
            Py_RETURN_NONE;
        if (b == 2)
            return read_node(ARG(node, 1), in, pos, depth + 1);
        malformed("union index byte %d for [null, T]", (int)b);
        return NULL;
    }
    case OP_UNION: {
        PyObject *nodes = ARG(node, 1), *labels = ARG(node, 2);
        Py_ssize_t count = PyTuple_GET_SIZE(nodes);
        if (read_varint(in, pos, &n) < 0)
            return NULL;
        if (n < 0 || n >= count) {
            malformed("union index %lld out of %zd branches", (long long)n, count);
            return NULL;
        }
        PyObject *value = read_node(PyTuple_GET_ITEM(nodes, n), in, pos, depth + 1);
        PyObject *label = PyTuple_GET_ITEM(labels, n);
        if (value == NULL || label == Py_None)
            return value;
        PyObject *pair = PyTuple_Pack(2, label, value);
        Py_DECREF(value);
        return pair;
    }
    case OP_ENUM: {
        PyObject *symbols = ARG(node, 1);
        Py_ssize_t count = PyTuple_GET_SIZE(symbols);
        if (read_varint(in, pos, &n) < 0)
            return NULL;
        if (n < 0 || n >= count) {
            malformed("enum index %lld out of %zd symbols", (long long)n, count);
            return NULL;
        }
        PyObject *symbol = PyTuple_GET_ITEM(symbols, n);
        Py_INCREF(symbol);
        return symbol;
    }
    case OP_ARRAY: {
        PyObject *item = ARG(node, 1);
        PyObject *out = PyList_New(0);
        if (out == NULL)
            return NULL;
        for (;;) {
            if (read_block(in, pos, &n) < 0)
                break;
            if (n == 0)
                return out;
            int64_t k;
            for (k = 0; k < n; k++) {
                PyObject *value = read_node(item, in, pos, depth + 1);
                if (value == NULL)
                    break;
                int appended = PyList_Append(out, value);
                Py_DECREF(value);
                if (appended < 0)
                    break;
            }
            if (k < n)
                break;
        }
        Py_DECREF(out);
        return NULL;
    }
    case OP_CACHED_ARRAY:
        return read_cached_array(node, in, pos, depth);
    case OP_MAP: {
        PyObject *values = ARG(node, 1);
        PyObject *out = PyDict_New();
        if (out == NULL)
            return NULL;
        for (;;) {
            if (read_block(in, pos, &n) < 0)
                break;
            if (n == 0)
                return out;
            int64_t k;
            for (k = 0; k < n; k++) {
                if (read_span(in, pos, &start) < 0)
                    break;
                PyObject *key = PyUnicode_DecodeUTF8((const char *)in->buf + start,
                                                     *pos - start, "strict");
                if (key == NULL)
                    break;
                PyObject *value = read_node(values, in, pos, depth + 1);
                int stored = value ? PyDict_SetItem(out, key, value) : -1;
                Py_DECREF(key);
                Py_XDECREF(value);
                if (stored < 0)
                    break;
            }
            if (k < n)
                break;
        }
        Py_DECREF(out);
        return NULL;
    }
    case OP_REF: {
        PyObject *holder = ARG(node, 1);
        PyObject *target = PyList_GET_SIZE(holder) ? PyList_GET_ITEM(holder, 0) : NULL;
        if (target == NULL || !PyTuple_Check(target)) {
            PyErr_SetString(PyExc_RuntimeError, "a named type read before its definition");
            return NULL;
        }
        return read_node(target, in, pos, depth + 1);
    }
    default:
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "not a plan node");
        return NULL;
    }
}

/* read(plan, data: bytes, pos: int) -> (value, end) */
static PyObject *
avroread_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyTuple_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "read(plan: tuple, data: bytes, pos: int)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[2]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    Body in = {(const unsigned char *)PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1])};
    if (pos < 0 || pos > in.size) {
        past_end();
        return NULL;
    }
    PyObject *value = read_node(args[0], &in, &pos, 0);
    if (value == NULL)
        return NULL;
    PyObject *end = PyLong_FromSsize_t(pos);
    if (end == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    PyObject *out = PyTuple_Pack(2, value, end);
    Py_DECREF(value);
    Py_DECREF(end);
    return out;
}

/* configure(malformed: type) */
static PyObject *
avroread_configure(PyObject *self, PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls,
                                                (PyTypeObject *)PyExc_Exception)) {
        PyErr_SetString(PyExc_TypeError, "configure(malformed: an exception class)");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(Malformed, cls);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"read", (PyCFunction)(void (*)(void))avroread_read, METH_FASTCALL,
     "read(plan, data, pos) -> (value, end): one Avro body read along a fastread plan."},
    {"configure", avroread_configure, METH_O,
     "configure(malformed): the exception class raised for bodies the reader refuses."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_avroread",
    "The byte work of streams.codec.fastread in C (see the source's header).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__avroread(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    str_wire = PyUnicode_InternFromString("wire");
    if (str_wire == NULL || PyModule_AddStringConstant(m, "SOURCE_SHA256", SOURCE_SHA256) < 0
        || PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
