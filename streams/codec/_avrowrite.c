/* The byte work of streams.codec.fastwrite in C: a datum written along a plan.

Owns: appending a datum's Avro binary encoding to a ``bytearray`` along a
*plan*, a tree of tuples that ``streams.codec.fastwrite`` builds once per
schema (``_plan``), with the bytes the Python writer appends for the same
datum. Must not touch: what a schema means (the plan says it), framing, or
anything of the pipeline.

C writes only the common cases: an ``int`` within 64 bits, a ``str``, a
boolean by its truth, a finite ``Decimal`` that is a whole number of
10**-scale within the precision (from the writer's two-generation cache, or
encoded and cached as the Python writer does it), an aware UTC ``datetime``,
None of a [null, T], records, arrays and enums. Every other value is handed
to the Python writer of that node (the plan carries it), which writes it or
raises what it raises; so both forms write the same bytes and refuse the
same data.

A plan node is a tuple whose first item is an opcode:

    OP_LONG      (python writer,)
    OP_STRING    (python writer,)
    OP_BOOL      ()
    OP_PYTHON    (python writer,)              bytes, null, times: always Python
    OP_DECIMAL   (cache: dict Decimal -> bytes, python writer, Decimal, the older
                  cache, 10**scale, 10**precision, (namespace, name) of the entries
                  of a cache generation, read when one is added as Python reads it,
                  precision - scale: no value whose adjusted() reaches it fits)
    OP_TIMESTAMP (python writer,)               timestamp-micros
    OP_RECORD    (keys: tuple[str], defaults: tuple, fields: tuple[node], MISSING)
    OP_OPTIONAL  (index of null: 0 or 1, node)
    OP_ARRAY     (item node,)
    OP_ENUM      (index: dict symbol -> int,)
    OP_REF       (holder: list,)                a record defined later (recursion)
*/

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

enum {
    OP_LONG = 0, OP_STRING = 1, OP_BOOL = 2, OP_PYTHON = 3, OP_DECIMAL = 4, OP_RECORD = 5,
    OP_OPTIONAL = 6, OP_ARRAY = 7, OP_ENUM = 8, OP_REF = 9, OP_TIMESTAMP = 10
};

#define MAX_DEPTH 5000
#define ARG(node, i) PyTuple_GET_ITEM((node), (i))

static PyObject *str_get = NULL; /* "get" */
static PyObject *str_is_finite = NULL, *str_as_integer_ratio = NULL, *str_adjusted = NULL;

static int
append(PyObject *out, const char *data, Py_ssize_t n)
{
    Py_ssize_t size = PyByteArray_GET_SIZE(out);
    if (PyByteArray_Resize(out, size + n) < 0)
        return -1;
    memcpy(PyByteArray_AS_STRING(out) + size, data, (size_t)n);
    return 0;
}

static int
append_varint(PyObject *out, int64_t value)
{
    uint64_t n = ((uint64_t)value << 1) ^ (uint64_t)(value >> 63);
    char buf[10];
    int len = 0;
    while (n & ~(uint64_t)0x7F) {
        buf[len++] = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    buf[len++] = (char)n;
    return append(out, buf, len);
}

static int
append_byte(PyObject *out, char b)
{
    return append(out, &b, 1);
}

static int
delegate(PyObject *writer, PyObject *out, PyObject *value)
{
    PyObject *args[2] = {out, value};
    PyObject *res = PyObject_Vectorcall(writer, args, 2, NULL);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

static int write_node(PyObject *node, PyObject *out, PyObject *value, int depth);
static int write_value(PyObject *node, long op, PyObject *out, PyObject *value, int depth);

/* The encoding (length varint + big-endian two's complement) of a finite Decimal that is
   a whole number of 10**-scale within the precision, as the Python writer makes it; NULL
   without an error when the Python writer is to decide (it raises or rounds). */
static PyObject *
encode_decimal(PyObject *node, PyObject *value)
{
    PyObject *finite = PyObject_CallMethodNoArgs(value, str_is_finite);
    if (finite == NULL)
        return NULL;
    int is_finite = finite == Py_True;
    Py_DECREF(finite);
    if (!is_finite)
        return NULL;
    PyObject *old = PyDict_GetItemWithError(ARG(node, 4), value);
    if (old != NULL) {
        if (!PyBytes_CheckExact(old))
            return NULL;  /* not what this writer stores: the Python writer decides */
        Py_INCREF(old);
        return old;
    }
    if (PyErr_Occurred())
        return NULL;
    /* A value whose leading digit is beyond the precision does not fit: the Python
       writer says so; as_integer_ratio would first build an int of its size (1E+99999999). */
    PyObject *adjusted = PyObject_CallMethodNoArgs(value, str_adjusted);
    if (adjusted == NULL)
        return NULL;
    int beyond = PyObject_RichCompareBool(adjusted, ARG(node, 8), Py_GE);
    Py_DECREF(adjusted);
    if (beyond != 0)
        return NULL;  /* beyond (1), or an error (-1) that stays set */
    PyObject *encoded = NULL, *scaled = NULL, *parts = NULL, *magnitude = NULL;
    PyObject *ratio = PyObject_CallMethodNoArgs(value, str_as_integer_ratio);
    if (ratio == NULL || !PyTuple_Check(ratio) || PyTuple_GET_SIZE(ratio) != 2)
        goto done;
    scaled = PyNumber_Multiply(PyTuple_GET_ITEM(ratio, 0), ARG(node, 5));
    if (scaled == NULL)
        goto done;
    parts = PyNumber_Divmod(scaled, PyTuple_GET_ITEM(ratio, 1));
    if (parts == NULL || !PyTuple_Check(parts) || PyTuple_GET_SIZE(parts) != 2)
        goto done;
    PyObject *unscaled = PyTuple_GET_ITEM(parts, 0), *rest = PyTuple_GET_ITEM(parts, 1);
    int exact = PyObject_Not(rest);
    if (exact <= 0 || !PyLong_CheckExact(unscaled))
        goto done;  /* not a whole number of 10**-scale: the Python writer decides */
    magnitude = PyNumber_Absolute(unscaled);
    if (magnitude == NULL)
        goto done;
    int fits = PyObject_RichCompareBool(magnitude, ARG(node, 6), Py_LT);
    if (fits <= 0)
        goto done;  /* beyond the precision: the Python writer refuses it */
    size_t bits = _PyLong_NumBits(magnitude);
    if (bits == (size_t)-1)
        goto done;
    Py_ssize_t n = (Py_ssize_t)((bits + 8) / 8);
    unsigned char head[10];
    int len = 0;
    uint64_t z = (uint64_t)n << 1;  /* the length, zig-zag: n >= 0 */
    while (z & ~(uint64_t)0x7F) {
        head[len++] = (unsigned char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    head[len++] = (unsigned char)z;
    encoded = PyBytes_FromStringAndSize(NULL, len + n);
    if (encoded == NULL)
        goto done;
    memcpy(PyBytes_AS_STRING(encoded), head, (size_t)len);
    if (_PyLong_AsByteArray((PyLongObject *)unscaled,
                            (unsigned char *)PyBytes_AS_STRING(encoded) + len, (size_t)n,
                            0, 1) < 0)
        Py_CLEAR(encoded);
done:
    Py_XDECREF(ratio);
    Py_XDECREF(scaled);
    Py_XDECREF(parts);
    Py_XDECREF(magnitude);
    return encoded;
}

static int
write_decimal(PyObject *node, PyObject *out, PyObject *value)
{
    PyObject *cache = ARG(node, 1);
    if ((PyObject *)Py_TYPE(value) != ARG(node, 3))
        return delegate(ARG(node, 2), out, value);  /* as `value.__class__ is Decimal` */
    PyObject *encoded = PyDict_GetItemWithError(cache, value);
    if (encoded != NULL) {
        Py_INCREF(encoded);  /* appending may run code that changes the cache */
        int rc = PyBytes_CheckExact(encoded)
                     ? append(out, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded))
                     : delegate(ARG(node, 2), out, value);
        Py_DECREF(encoded);
        return rc;
    }
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError))  /* a signalling NaN: unhashable */
            return -1;
        PyErr_Clear();
        return delegate(ARG(node, 2), out, value);
    }
    encoded = encode_decimal(node, value);
    if (encoded == NULL)
        return PyErr_Occurred() ? -1 : delegate(ARG(node, 2), out, value);
    int rc = append(out, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded));
    /* `len(cache) >= DECIMAL_CACHE_SIZE`, the module's name read now, as Python reads it */
    PyObject *where = ARG(node, 7);
    int full = 0;
    if (rc == 0) {
        PyObject *size = PyDict_GetItemWithError(PyTuple_GET_ITEM(where, 0),
                                                 PyTuple_GET_ITEM(where, 1));
        PyObject *count = size != NULL ? PyLong_FromSsize_t(PyDict_GET_SIZE(cache)) : NULL;
        if (count != NULL)
            full = PyObject_RichCompareBool(count, size, Py_GE);
        else if (!PyErr_Occurred())
            PyErr_Format(PyExc_NameError, "name %R is not defined", PyTuple_GET_ITEM(where, 1));
        Py_XDECREF(count);
        if (count == NULL || full < 0)
            rc = -1;
    }
    if (rc == 0 && full) {
        /* the young generation becomes the old one, as the Python writer turns them */
        PyObject *old = ARG(node, 4);
        PyDict_Clear(old);
        rc = PyDict_Update(old, cache);
        PyDict_Clear(cache);
    }
    if (rc == 0)
        rc = PyDict_SetItem(cache, value, encoded);
    Py_DECREF(encoded);
    return rc;
}

/* Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int
write_timestamp(PyObject *node, PyObject *out, PyObject *value)
{
    if (!PyDateTime_CheckExact(value)
        || PyDateTime_DATE_GET_TZINFO(value) != PyDateTime_TimeZone_UTC)
        return delegate(ARG(node, 1), out, value);  /* other zones, naive times, ints */
    int64_t days = days_from_civil(PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value),
                                   PyDateTime_GET_DAY(value));
    int64_t seconds = days * 86400 + PyDateTime_DATE_GET_HOUR(value) * 3600
                      + PyDateTime_DATE_GET_MINUTE(value) * 60
                      + PyDateTime_DATE_GET_SECOND(value);
    return append_varint(out, seconds * 1000000 + PyDateTime_DATE_GET_MICROSECOND(value));
}

static int
write_record(PyObject *node, PyObject *out, PyObject *value, int depth)
{
    PyObject *keys = ARG(node, 1), *defaults = ARG(node, 2), *fields = ARG(node, 3);
    PyObject *missing = ARG(node, 4);
    Py_ssize_t count = PyTuple_GET_SIZE(fields);
    PyObject *get = NULL;
    if (!PyDict_CheckExact(value)) {
        get = PyObject_GetAttr(value, str_get);  /* the Python writer's `get = value.get` */
        if (get == NULL)
            return -1;
    }
    int rc = -1;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *key = PyTuple_GET_ITEM(keys, i), *fallback = PyTuple_GET_ITEM(defaults, i);
        PyObject *field;
        if (get == NULL) {
            field = PyDict_GetItemWithError(value, key);
            if (field == NULL && PyErr_Occurred())
                goto done;
            field = field ? field : fallback;
            Py_INCREF(field);
        } else {
            PyObject *args[2] = {key, fallback};
            field = PyObject_Vectorcall(get, args, 2, NULL);
            if (field == NULL)
                goto done;
        }
        if (field == missing) {
            Py_DECREF(field);
            PyErr_Format(PyExc_ValueError, "missing field %R", key);
            goto done;
        }
        int written = write_node(PyTuple_GET_ITEM(fields, i), out, field, depth + 1);
        Py_DECREF(field);
        if (written < 0)
            goto done;
    }
    rc = 0;
done:
    Py_XDECREF(get);
    return rc;
}

static int
write_array(PyObject *node, PyObject *out, PyObject *value, int depth)
{
    int truth = PyObject_IsTrue(value);  /* the Python writer's `if value:` */
    if (truth < 0)
        return -1;
    if (truth) {
        Py_ssize_t n = PyObject_Length(value);
        if (n < 0 || append_varint(out, n) < 0)
            return -1;
        PyObject *items = PyObject_GetIter(value);
        if (items == NULL)
            return -1;
        PyObject *element;
        while ((element = PyIter_Next(items)) != NULL) {
            int written = write_node(ARG(node, 1), out, element, depth + 1);
            Py_DECREF(element);
            if (written < 0) {
                Py_DECREF(items);
                return -1;
            }
        }
        Py_DECREF(items);
        if (PyErr_Occurred())
            return -1;
    }
    return append_byte(out, 0);
}

static int
write_node(PyObject *node, PyObject *out, PyObject *value, int depth)
{
    if (depth > MAX_DEPTH) {
        PyErr_Format(PyExc_RecursionError, "values nested deeper than %d levels", MAX_DEPTH);
        return -1;
    }
    long op = PyLong_AsLong(ARG(node, 0));
    /* a record, an array and a named reference each cost the Python writer a frame */
    if (op != OP_RECORD && op != OP_ARRAY && op != OP_REF)
        return write_value(node, op, out, value, depth);
    if (Py_EnterRecursiveCall(" while writing an Avro body"))
        return -1;
    int rc = write_value(node, op, out, value, depth);
    Py_LeaveRecursiveCall();
    return rc;
}

static int
write_value(PyObject *node, long op, PyObject *out, PyObject *value, int depth)
{
    switch (op) {
    case OP_LONG:
        if (PyLong_CheckExact(value)) {
            int overflow = 0;
            long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (!overflow)
                return append_varint(out, n);
        }
        return delegate(ARG(node, 1), out, value);  /* bools, other types, beyond 64 bits */
    case OP_STRING:
        if (PyUnicode_CheckExact(value)) {
            Py_ssize_t n;
            const char *data = PyUnicode_AsUTF8AndSize(value, &n);
            if (data == NULL || append_varint(out, n) < 0)
                return -1;
            return append(out, data, n);
        }
        return delegate(ARG(node, 1), out, value);
    case OP_BOOL: {
        int truth = PyObject_IsTrue(value);
        return truth < 0 ? -1 : append_byte(out, truth ? 1 : 0);
    }
    case OP_PYTHON:
        return delegate(ARG(node, 1), out, value);
    case OP_DECIMAL:
        return write_decimal(node, out, value);
    case OP_TIMESTAMP:
        return write_timestamp(node, out, value);
    case OP_RECORD:
        return write_record(node, out, value, depth);
    case OP_OPTIONAL: {
        long null_index = PyLong_AsLong(ARG(node, 1));
        if (value == Py_None)
            return append_byte(out, (char)(2 * null_index));
        if (append_byte(out, (char)(2 * (1 - null_index))) < 0)
            return -1;
        return write_node(ARG(node, 2), out, value, depth + 1);
    }
    case OP_ARRAY:
        return write_array(node, out, value, depth);
    case OP_ENUM: {
        PyObject *index = PyDict_GetItemWithError(ARG(node, 1), value);
        if (index == NULL) {
            if (!PyErr_Occurred()) {
                PyObject *args = PyTuple_Pack(1, value);  /* KeyError(value), tuples too */
                if (args != NULL) {
                    PyErr_SetObject(PyExc_KeyError, args);
                    Py_DECREF(args);
                }
            }
            return -1;
        }
        long long n = PyLong_AsLongLong(index);
        if (n == -1 && PyErr_Occurred())
            return -1;
        return append_varint(out, n);
    }
    case OP_REF: {
        PyObject *holder = ARG(node, 1);
        PyObject *target = PyList_GET_SIZE(holder) ? PyList_GET_ITEM(holder, 0) : NULL;
        if (target == NULL || !PyTuple_Check(target)) {
            PyErr_SetString(PyExc_RuntimeError, "a record written before its definition");
            return -1;
        }
        Py_INCREF(target);
        int rc = write_node(target, out, value, depth + 1);
        Py_DECREF(target);
        return rc;
    }
    default:
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "not a plan node");
        return -1;
    }
}

/* write(plan, out: bytearray, value) -> None */
static PyObject *
avrowrite_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyTuple_Check(args[0]) || !PyByteArray_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "write(plan: tuple, out: bytearray, value)");
        return NULL;
    }
    if (write_node(args[0], args[1], args[2], 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* encode(plan, value) -> bytes */
static PyObject *
avrowrite_encode(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyTuple_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "encode(plan: tuple, value)");
        return NULL;
    }
    PyObject *out = PyByteArray_FromStringAndSize(NULL, 0);
    if (out == NULL)
        return NULL;
    PyObject *result = NULL;
    if (write_node(args[0], out, args[1], 0) == 0)
        result = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(out), PyByteArray_GET_SIZE(out));
    Py_DECREF(out);
    return result;
}

static PyMethodDef methods[] = {
    {"write", (PyCFunction)(void (*)(void))avrowrite_write, METH_FASTCALL,
     "write(plan, out, value): append value's Avro encoding along a fastwrite plan."},
    {"encode", (PyCFunction)(void (*)(void))avrowrite_encode, METH_FASTCALL,
     "encode(plan, value) -> bytes: value's Avro encoding along a fastwrite plan."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_avrowrite",
    "The byte work of streams.codec.fastwrite in C (see the source's header).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__avrowrite(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    str_get = PyUnicode_InternFromString("get");
    str_is_finite = PyUnicode_InternFromString("is_finite");
    str_as_integer_ratio = PyUnicode_InternFromString("as_integer_ratio");
    str_adjusted = PyUnicode_InternFromString("adjusted");
    if (str_get == NULL || str_is_finite == NULL || str_as_integer_ratio == NULL
        || str_adjusted == NULL || PyModule_AddStringConstant(m, "SOURCE_SHA256", SOURCE_SHA256) < 0
        || PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
