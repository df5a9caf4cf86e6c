/* The byte work of streams.codec.fastread in C: an Avro binary body read by a plan.

Owns: walking one ``bytes`` body along a *plan*, a tree of tuples that
``streams.codec.fastread`` builds once per writer schema (``_Planner``), and
building the same Python values the Python reader builds. Must not touch:
what a schema means (the plan says it), or anything of the pipeline.

Decimals and times: the plan carries the Python rule for each (``make``). C
takes a shorter way only where its result is provably the same object value:
a decimal whose unscaled value fits 128 bits and the declared precision is
``Decimal("<unscaled>E-<scale>")`` (what ``Decimal(u).scaleb(-scale)`` gives
without rounding), and a time from 0001 to 9999 is built field by field in UTC;
anything else goes to ``make``, which raises the Python reader's errors.

A plan node is a tuple whose first item is an opcode (the ``OP_*`` below and
in fastread). Its other items:

    OP_RECORD        (keys: tuple[str], fields: tuple[node])
    OP_OPTIONAL      (node,)                    [null, T]: index byte 0 or 2
    OP_UNION         (nodes: tuple, labels: tuple[str | None])
    OP_ENUM          (symbols: tuple[str],)
    OP_ARRAY         (item node,)
    OP_CACHED_ARRAY  (item node, cache: dict, name: str, item type, cache size,
                      the longest item cached, in bytes)
    OP_MAP           (value node,)
    OP_DECIMAL       (cache: dict, make: callable(bytes) -> Decimal, cache size,
                      Decimal, precision, scale, the most bytes make accepts)
    OP_TIMESTAMP     (make: callable(int) -> datetime, microseconds per unit)
    OP_REF           (holder: list,)            a named type defined later (recursion)

Malformed input raises, never reads short: IndexError past the end of the
body (as ``data[pos]`` does), fastread's ``Malformed`` for anything else the
Python reader refuses (the class is handed over by ``configure``), and
UnicodeDecodeError for a string that is not UTF-8. Nesting (only a recursive
schema allows it without bound) counts against Python's recursion limit, one
level per record, union, array, map or reference as the Python reader spends
a frame on each, so both raise RecursionError at about the same depth; C also
refuses more than MAX_DEPTH such levels (Malformed) to keep its stack bounded
whatever the recursion limit.
*/

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <stdio.h>

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

enum {
    OP_NULL = 0, OP_BOOL = 1, OP_LONG = 2, OP_FLOAT = 3, OP_DOUBLE = 4, OP_BYTES = 5,
    OP_STRING = 6, OP_DECIMAL = 7, OP_TIMESTAMP = 8, OP_RECORD = 9, OP_OPTIONAL = 10,
    OP_UNION = 11, OP_ENUM = 12, OP_ARRAY = 13, OP_CACHED_ARRAY = 14, OP_MAP = 15,
    OP_REF = 16
};

#define MAX_DEPTH 5000

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

/* A decimal from its wire bytes (big-endian two's complement, unscaled): see the header. */
static PyObject *
make_decimal(PyObject *node, PyObject *raw)
{
    Py_ssize_t len = PyBytes_GET_SIZE(raw);
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(raw);
    long precision = PyLong_AsLong(ARG(node, 5)), scale = PyLong_AsLong(ARG(node, 6));
    if (len == 0 || len > 16 || len > PyLong_AsSsize_t(ARG(node, 7)) || precision < 1
        || precision > 38 || scale < 0 || scale > 99)
        return PyObject_CallOneArg(ARG(node, 2), raw);
    __int128 u = (b[0] & 0x80) ? -1 : 0;
    for (Py_ssize_t i = 0; i < len; i++)
        u = (__int128)(((unsigned __int128)u << 8) | b[i]);
    unsigned __int128 mag = u < 0 ? (unsigned __int128)(-(u + 1)) + 1 : (unsigned __int128)u;
    unsigned __int128 limit = 1;
    for (long i = 0; i < precision; i++)
        limit *= 10;
    if (mag >= limit)  /* beyond the precision: the Python rule rounds it */
        return PyObject_CallOneArg(ARG(node, 2), raw);
    /* digits in 64-bit steps: a 128-bit division per digit would cost more than Python */
    const uint64_t e19 = 10000000000000000000ULL;
    uint64_t high = (uint64_t)(mag / e19), low = (uint64_t)(mag % e19);
    char digits[48], text[64];
    int nd = 0;
    if (high) {
        for (int i = 0; i < 19; i++, low /= 10)
            digits[nd++] = (char)('0' + (int)(low % 10));
        low = high;
    }
    do {
        digits[nd++] = (char)('0' + (int)(low % 10));
        low /= 10;
    } while (low);
    int at = 0;
    if (u < 0)
        text[at++] = '-';
    while (nd)
        text[at++] = digits[--nd];
    at += snprintf(text + at, sizeof(text) - (size_t)at, "E-%ld", scale);
    PyObject *str = PyUnicode_FromStringAndSize(text, at);
    if (str == NULL)
        return NULL;
    PyObject *value = PyObject_CallOneArg(ARG(node, 4), str);
    Py_DECREF(str);
    return value;
}

/* Days since 1970-01-01 -> proleptic Gregorian (y, m, d) (H. Hinnant's civil_from_days). */
static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* A UTC time from a count of units since the epoch: see the header. */
static PyObject *
make_time(PyObject *node, int64_t n)
{
    int64_t unit = PyLong_AsLongLong(ARG(node, 2));
    /* 0001-01-01 .. 9999-12-31 in microseconds, with room to spare for the checks */
    const int64_t lo = -62135596800LL * 1000000, hi = 253402300800LL * 1000000;
    if (unit >= 1 && n > lo / unit && n < hi / unit) {
        int64_t micros = n * unit;
        int64_t days = micros >= 0 ? micros / 86400000000LL
                                   : -((-micros + 86400000000LL - 1) / 86400000000LL);
        int64_t rest = micros - days * 86400000000LL;
        int64_t year;
        int month, day;
        civil_from_days(days, &year, &month, &day);
        if (year >= 1 && year <= 9999) {
            int64_t secs = rest / 1000000;
            return PyDateTimeAPI->DateTime_FromDateAndTime(
                (int)year, month, day, (int)(secs / 3600), (int)(secs / 60 % 60),
                (int)(secs % 60), (int)(rest % 1000000), PyDateTime_TimeZone_UTC,
                PyDateTimeAPI->DateTimeType);
        }
    }
    PyObject *count = PyLong_FromLongLong(n);
    if (count == NULL)
        return NULL;
    PyObject *value = PyObject_CallOneArg(ARG(node, 1), count);
    Py_DECREF(count);
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
    Py_ssize_t longest = PyLong_AsSsize_t(ARG(node, 6));
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
            if (end > *pos && end <= in->size && end - *pos <= longest) {
                raw = PyBytes_FromStringAndSize((const char *)in->buf + *pos, end - *pos);
                if (raw == NULL)
                    goto fail;
                PyObject *hit = PyDict_GetItemWithError(cache, raw);
                if (hit != NULL) {
                    Py_INCREF(hit);  /* the copy allocates: a collection may clear the cache */
                    PyObject *wire = PyObject_GetAttr(hit, str_wire);
                    PyObject *copy = wire ? item_copy(item_type, hit, wire) : NULL;
                    Py_XDECREF(wire);
                    Py_DECREF(hit);
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
            PyObject *value = read_node(item, in, pos, depth);
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

/* An IEEE 754 float (4 bytes) or double (8), little-endian. */
static PyObject *
read_float(const Body *in, Py_ssize_t *pos, int width)
{
    if (in->size - *pos < width) {
        malformed("a %s needs %d bytes, %zd left", width == 4 ? "float" : "double", width,
                  in->size - *pos);
        return NULL;
    }
    const char *at = (const char *)in->buf + *pos;
    double d = width == 4 ? PyFloat_Unpack4(at, 1) : PyFloat_Unpack8(at, 1);
    if (d == -1.0 && PyErr_Occurred())
        return NULL;
    *pos += width;
    return PyFloat_FromDouble(d);
}

static PyObject *read_value(PyObject *node, long op, const Body *in, Py_ssize_t *pos,
                            int depth);

static PyObject *
read_node(PyObject *node, const Body *in, Py_ssize_t *pos, int depth)
{
    long op = op_of(node);
    if (op < OP_RECORD)  /* a scalar: read in place, as the Python reader does */
        return read_value(node, op, in, pos, depth);
    if (depth > MAX_DEPTH) {
        malformed("values nested deeper than %d levels", MAX_DEPTH);
        return NULL;
    }
    if (Py_EnterRecursiveCall(" while reading an Avro body"))
        return NULL;
    PyObject *value = read_value(node, op, in, pos, depth + 1);
    Py_LeaveRecursiveCall();
    return value;
}

static PyObject *
read_value(PyObject *node, long op, const Body *in, Py_ssize_t *pos, int depth)
{
    int64_t n;
    Py_ssize_t start;
    switch (op) {
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
    case OP_FLOAT:
        return read_float(in, pos, 4);
    case OP_DOUBLE:
        return read_float(in, pos, 8);
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
        PyObject *cache = ARG(node, 1);
        PyObject *value = PyDict_GetItemWithError(cache, raw);
        if (value != NULL) {
            Py_INCREF(value);
        } else if (!PyErr_Occurred()) {
            value = make_decimal(node, raw);
            if (value != NULL) {
                if (PyDict_GET_SIZE(cache) >= PyLong_AsSsize_t(ARG(node, 3)))
                    PyDict_Clear(cache);
                if (PyDict_SetItem(cache, raw, value) < 0)
                    Py_CLEAR(value);
            }
        }
        Py_DECREF(raw);
        return value;
    }
    case OP_TIMESTAMP: {
        if (read_varint(in, pos, &n) < 0)
            return NULL;
        return make_time(node, n);
    }
    case OP_RECORD: {
        PyObject *keys = ARG(node, 1), *fields = ARG(node, 2);
        Py_ssize_t count = PyTuple_GET_SIZE(fields);
        PyObject *out = _PyDict_NewPresized(count);
        if (out == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *value = read_node(PyTuple_GET_ITEM(fields, i), in, pos, depth);
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
            return read_node(ARG(node, 1), in, pos, depth);
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
        PyObject *value = read_node(PyTuple_GET_ITEM(nodes, n), in, pos, depth);
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
                PyObject *value = read_node(item, in, pos, depth);
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
                PyObject *value = read_node(values, in, pos, depth);
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
        return read_node(target, in, pos, depth);
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
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
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
