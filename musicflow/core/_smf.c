/*
 * musicflow.core._smf: a small, bounds-checked Standard MIDI File note reader.
 *
 * Why C: a pure-Python byte loop is ~50x too slow for the encode stage (a mido loop takes
 * 12.9 s for piano-midi.de here; this reads it in tens of milliseconds). Why not numpy
 * headers: the extension must build from source anywhere with only Python.h.
 *
 * Private module: use musicflow.core.midi.scan_midi(). One function:
 *
 *   parse(buffer, max_notes, max_events[, with_tracks]) -> (err_code, err_detail, midi_type,
 *         n_tracks, division, notes, n_drum_notes, n_orphan_note_off, n_unterminated, names)
 *
 * err_code is None on success, else "not_midi", "truncated", "too_large" (more than
 * max_notes notes or max_events events: a resource bomb, stopped before it costs more memory
 * or time) or "nomem" (then the other fields are whatever was known: -1 for an unread
 * header). notes is a bytearray holding
 * N x 5 native int64 (track, channel, pitch, on_tick, off_tick), channel 9 (drums) excluded,
 * sorted by (on_tick, pitch, track, channel, off_tick).
 *
 * with_tracks (default 0) is for the track policies (docs/encoding.md, "Tracks"): drum notes are
 * paired and kept like the others (and count towards max_notes; a drum note-off with nothing open
 * is still no orphan), each note gets a sixth column, the program in force (below), and names
 * lists each track's first Sequence/Track Name meta event (bytes, at most 64; b"" when none).
 * Without it, notes and counters are exactly as above and names is an empty list.
 *
 * Program in force: channel state, per track in file order. A track starts from the programs set
 * at tick 0 by the tracks before it (a conductor track's set-up), then follows its own program
 * changes; 0 (Acoustic Grand Piano, the General MIDI default) when none was set.
 *
 * Pairing (docs/encoding.md rule 2): per track, note_on vel > 0 opens a note for
 * (channel, pitch); note_off or note_on vel 0 closes the earliest open one (FIFO); a close with
 * nothing open counts as orphan; notes open at the track end close at the track's last tick
 * (counted unterminated).
 *
 * Safety: every read is bounds-checked against the chunk end, chunk lengths are checked against
 * the buffer, delta-times are at most 4 bytes (28 bits) so absolute ticks stay far below
 * 2^63, and all sizes are size_t/int64. Memory is bounded by max_notes (32 bytes per note
 * here, 40 in the result) and time by max_events (events of all tracks, meta and sysex
 * included). The GIL is released for the whole parse and sort; no
 * Python object is touched meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_KEYS (16 * 128)
#define DRUM_CHANNEL 9
#define NAME_BYTES 64

typedef struct {
    int64_t on;
    int64_t off;
    int64_t next; /* next open note of the same (channel, pitch), -1 = none */
    int32_t track;
    uint8_t channel;
    uint8_t pitch;
    uint8_t program;
} Note;

typedef struct {
    /* input */
    const uint8_t *data;
    size_t len;
    /* header */
    long midi_type;
    long n_tracks_header;
    long division;
    long n_tracks;
    /* notes */
    Note *notes;
    size_t n_notes;
    size_t cap;
    int64_t head[N_KEYS];
    int64_t tail[N_KEYS];
    size_t n_open;
    /* tracks: with_tracks mode */
    int with_tracks;
    int16_t initial_program[16]; /* set at tick 0 by the tracks parsed so far, -1 = none */
    int16_t program[16];         /* in force in the track being parsed, -1 = none */
    char *names;                 /* n_tracks_header x NAME_BYTES, NUL-padded */
    uint8_t *name_len;
    /* limits */
    int64_t max_notes;
    int64_t max_events;
    int64_t n_events;
    /* counters */
    int64_t n_drum;
    int64_t n_orphan;
    int64_t n_unterm;
    /* error */
    const char *err;
    char detail[200];
} Parser;

static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static uint16_t be16(const uint8_t *p) { return (uint16_t)(((unsigned)p[0] << 8) | p[1]); }

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(Parser *ps, const char *code, const char *fmt, ...) {
    va_list args;
    ps->err = code;
    va_start(args, fmt);
    vsnprintf(ps->detail, sizeof ps->detail, fmt, args);
    va_end(args);
    return -1;
}

/* Reads a variable-length quantity of at most 4 bytes in [*pos, end). */
static int read_vlq(Parser *ps, size_t *pos, size_t end, uint32_t *out, long track) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        if (*pos >= end)
            return fail(ps, "truncated", "track %ld: event runs past the end of its chunk (at byte %ld)",
                        track, (long)*pos);
        uint8_t b = ps->data[(*pos)++];
        v = (v << 7) | (uint32_t)(b & 0x7F);
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return fail(ps, "truncated", "track %ld: variable-length quantity longer than 4 bytes (at byte %ld)",
                track, (long)*pos);
}

static int open_note(Parser *ps, int32_t track, uint8_t channel, uint8_t pitch, int64_t tick) {
    if ((int64_t)ps->n_notes >= ps->max_notes)
        return fail(ps, "too_large", "more than %lld notes (the per-file limit)", (long long)ps->max_notes);
    if (ps->n_notes == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 1024;
        if (cap > ((size_t)-1) / sizeof(Note) || cap > (size_t)INT64_MAX) {
            ps->err = "nomem";
            return -1;
        }
        Note *grown = (Note *)realloc(ps->notes, cap * sizeof(Note));
        if (!grown) {
            ps->err = "nomem";
            snprintf(ps->detail, sizeof ps->detail, "out of memory");
            return -1;
        }
        ps->notes = grown;
        ps->cap = cap;
    }
    int64_t idx = (int64_t)ps->n_notes++;
    Note *n = &ps->notes[idx];
    n->on = tick;
    n->off = -1;
    n->next = -1;
    n->track = track;
    n->channel = channel;
    n->pitch = pitch;
    n->program = ps->program[channel] < 0 ? 0 : (uint8_t)ps->program[channel];
    int key = channel * 128 + pitch;
    if (ps->tail[key] < 0)
        ps->head[key] = idx;
    else
        ps->notes[ps->tail[key]].next = idx;
    ps->tail[key] = idx;
    ps->n_open++;
    return 0;
}

static void close_note(Parser *ps, uint8_t channel, uint8_t pitch, int64_t tick) {
    int key = channel * 128 + pitch;
    int64_t idx = ps->head[key];
    if (idx < 0) {
        if (channel != DRUM_CHANNEL)
            ps->n_orphan++;
        return;
    }
    Note *n = &ps->notes[idx];
    n->off = tick;
    ps->head[key] = n->next;
    if (n->next < 0)
        ps->tail[key] = -1;
    n->next = -1;
    ps->n_open--;
}

static void close_all(Parser *ps, int64_t tick) {
    if (ps->n_open == 0)
        return;
    for (int key = 0; key < N_KEYS; key++) {
        int64_t idx = ps->head[key];
        while (idx >= 0) {
            Note *n = &ps->notes[idx];
            n->off = tick;
            idx = n->next;
            n->next = -1;
            ps->n_unterm++;
        }
        ps->head[key] = -1;
        ps->tail[key] = -1;
    }
    ps->n_open = 0;
}

/* Parses the events of one MTrk chunk occupying [pos, end). */
static int parse_track(Parser *ps, size_t pos, size_t end, long track) {
    const uint8_t *d = ps->data;
    int64_t tick = 0;
    uint8_t running = 0;
    for (int ch = 0; ch < 16; ch++)
        ps->program[ch] = ps->initial_program[ch];

    while (pos < end) {
        uint32_t delta;
        if (++ps->n_events > ps->max_events)
            return fail(ps, "too_large", "more than %lld events (the per-file limit)", (long long)ps->max_events);
        if (read_vlq(ps, &pos, end, &delta, track) < 0)
            return -1;
        tick += delta;
        if (pos >= end)
            return fail(ps, "truncated", "track %ld: delta-time without an event at the end of its chunk (byte %ld)",
                        track, (long)pos);
        uint8_t status = d[pos];
        if (status & 0x80) {
            pos++;
        } else {
            if (!running)
                return fail(ps, "truncated", "track %ld: missing status byte (byte %ld)", track, (long)pos);
            status = running;
        }

        if (status == 0xFF) {
            /* meta event: type, length, data; does not change running status */
            if (pos >= end)
                return fail(ps, "truncated", "track %ld: meta event runs past the end of its chunk (byte %ld)",
                            track, (long)pos);
            uint8_t type = d[pos++];
            uint32_t mlen;
            if (read_vlq(ps, &pos, end, &mlen, track) < 0)
                return -1;
            if ((size_t)mlen > end - pos)
                return fail(ps, "truncated", "track %ld: meta event runs past the end of its chunk (byte %ld)",
                            track, (long)pos);
            if (type == 0x03 && ps->names && track < ps->n_tracks_header && ps->name_len[track] == 0 && mlen > 0) {
                size_t n = mlen < NAME_BYTES ? (size_t)mlen : NAME_BYTES;
                memcpy(ps->names + (size_t)track * NAME_BYTES, d + pos, n);
                ps->name_len[track] = (uint8_t)n;
            }
            pos += mlen;
            if (type == 0x2F)
                break; /* End of Track: the rest of the chunk is ignored */
        } else if (status == 0xF0 || status == 0xF7) {
            /* sysex: length, data; cancels running status */
            uint32_t slen;
            if (read_vlq(ps, &pos, end, &slen, track) < 0)
                return -1;
            if ((size_t)slen > end - pos)
                return fail(ps, "truncated", "track %ld: sysex event runs past the end of its chunk (byte %ld)",
                            track, (long)pos);
            pos += slen;
            running = 0;
        } else if (status >= 0xF0) {
            return fail(ps, "truncated", "track %ld: invalid status byte 0x%02lx", track, (long)status);
        } else {
            uint8_t kind = status & 0xF0;
            size_t nd = (kind == 0xC0 || kind == 0xD0) ? 1 : 2;
            if (end - pos < nd)
                return fail(ps, "truncated", "track %ld: channel message runs past the end of its chunk (byte %ld)",
                            track, (long)pos);
            uint8_t d1 = d[pos];
            uint8_t d2 = nd == 2 ? d[pos + 1] : 0;
            if ((d1 | d2) & 0x80)
                return fail(ps, "truncated", "track %ld: data byte above 127 (byte %ld)", track, (long)pos);
            pos += nd;
            running = status;
            uint8_t channel = status & 0x0F;
            int keep = channel != DRUM_CHANNEL || ps->with_tracks;
            if (kind == 0x90 && d2 > 0) {
                if (channel == DRUM_CHANNEL)
                    ps->n_drum++;
                if (keep && open_note(ps, (int32_t)track, channel, d1, tick) < 0)
                    return -1;
            } else if (kind == 0x80 || kind == 0x90) {
                if (keep)
                    close_note(ps, channel, d1, tick);
            } else if (kind == 0xC0) {
                ps->program[channel] = d1;
                if (tick == 0)
                    ps->initial_program[channel] = d1;
            }
        }
    }
    close_all(ps, tick);
    return 0;
}

static int parse_file(Parser *ps) {
    const uint8_t *d = ps->data;
    size_t len = ps->len;
    if (len < 4 || memcmp(d, "MThd", 4) != 0)
        return fail(ps, "not_midi", "no MThd header (file of %ld bytes)", (long)len);
    if (len < 14)
        return fail(ps, "truncated", "header cut short (%ld of 14 bytes)", (long)len);
    uint32_t hlen = be32(d + 4);
    ps->midi_type = be16(d + 8);
    ps->n_tracks_header = be16(d + 10);
    ps->division = be16(d + 12);
    if (hlen < 6)
        return fail(ps, "truncated", "header chunk length %ld < 6", (long)hlen);
    if ((size_t)hlen > len - 8)
        return fail(ps, "truncated", "header chunk claims %ld bytes, %ld present", (long)hlen, (long)(len - 8));
    size_t pos = 8 + (size_t)hlen;
    if (ps->with_tracks && ps->n_tracks_header > 0) {
        /* at most 65535 x 65 bytes */
        ps->names = (char *)calloc((size_t)ps->n_tracks_header, NAME_BYTES);
        ps->name_len = (uint8_t *)calloc((size_t)ps->n_tracks_header, 1);
        if (!ps->names || !ps->name_len) {
            ps->err = "nomem";
            return -1;
        }
    }

    ps->n_tracks = 0;
    while (ps->n_tracks < ps->n_tracks_header) {
        if (len - pos < 8)
            return fail(ps, "truncated", "header declares %ld tracks, file ends after %ld", ps->n_tracks_header,
                        ps->n_tracks);
        uint32_t clen = be32(d + pos + 4);
        int is_track = memcmp(d + pos, "MTrk", 4) == 0;
        pos += 8;
        if ((size_t)clen > len - pos)
            return fail(ps, "truncated", "chunk claims %ld bytes, only %ld left", (long)clen, (long)(len - pos));
        if (is_track) {
            if (parse_track(ps, pos, pos + clen, ps->n_tracks) < 0)
                return -1;
            ps->n_tracks++;
        }
        pos += clen; /* unknown chunk types are skipped */
    }
    return 0;
}

static int cmp_note(const void *pa, const void *pb) {
    const Note *a = (const Note *)pa, *b = (const Note *)pb;
    if (a->on != b->on)
        return a->on < b->on ? -1 : 1;
    if (a->pitch != b->pitch)
        return a->pitch < b->pitch ? -1 : 1;
    if (a->track != b->track)
        return a->track < b->track ? -1 : 1;
    if (a->channel != b->channel)
        return a->channel < b->channel ? -1 : 1;
    if (a->off != b->off)
        return a->off < b->off ? -1 : 1;
    if (a->program != b->program)
        return a->program < b->program ? -1 : 1;
    return 0;
}

static PyObject *smf_parse(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    long long max_notes, max_events;
    int with_tracks = 0;
    if (!PyArg_ParseTuple(args, "y*LL|p", &view, &max_notes, &max_events, &with_tracks))
        return NULL;
    if (max_notes < 0 || max_events < 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "limits must be >= 0");
        return NULL;
    }
    Parser *ps = (Parser *)calloc(1, sizeof(Parser));
    if (!ps) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    ps->max_notes = (int64_t)max_notes;
    ps->max_events = (int64_t)max_events;
    ps->data = (const uint8_t *)view.buf;
    ps->len = (size_t)view.len;
    ps->midi_type = ps->n_tracks_header = ps->division = ps->n_tracks = -1;
    ps->with_tracks = with_tracks;
    for (int k = 0; k < N_KEYS; k++)
        ps->head[k] = ps->tail[k] = -1;
    for (int ch = 0; ch < 16; ch++)
        ps->initial_program[ch] = -1;

    Py_BEGIN_ALLOW_THREADS
    if (parse_file(ps) == 0 && ps->n_notes > 1)
        qsort(ps->notes, ps->n_notes, sizeof(Note), cmp_note);
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&view);
    PyObject *result = NULL;
    PyObject *notes = NULL;
    PyObject *names = NULL;
    size_t cols = with_tracks ? 6 : 5;
    if (ps->err && strcmp(ps->err, "nomem") == 0) {
        PyErr_NoMemory();
        goto done;
    }
    size_t n = ps->err ? 0 : ps->n_notes;
    if (n > (size_t)PY_SSIZE_T_MAX / (cols * sizeof(int64_t))) {
        PyErr_NoMemory();
        goto done;
    }
    /* a bytearray, so numpy views it writable without a copy */
    notes = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(n * cols * sizeof(int64_t)));
    if (!notes)
        goto done;
    int64_t *out = (int64_t *)PyByteArray_AS_STRING(notes);
    for (size_t i = 0; i < n; i++) {
        const Note *nt = &ps->notes[i];
        int64_t *row = out + cols * i;
        row[0] = nt->track;
        row[1] = nt->channel;
        row[2] = nt->pitch;
        row[3] = nt->on;
        row[4] = nt->off;
        if (with_tracks)
            row[5] = nt->program;
    }
    names = PyList_New(0);
    if (!names)
        goto done;
    if (!ps->err && ps->names) {
        for (long t = 0; t < ps->n_tracks && t < ps->n_tracks_header; t++) {
            PyObject *name = PyBytes_FromStringAndSize(ps->names + (size_t)t * NAME_BYTES, ps->name_len[t]);
            if (!name || PyList_Append(names, name) < 0) {
                Py_XDECREF(name);
                goto done;
            }
            Py_DECREF(name);
        }
    }
    if (ps->err)
        result = Py_BuildValue("(sslllOLLLO)", ps->err, ps->detail, ps->midi_type, ps->n_tracks, ps->division,
                               notes, (long long)ps->n_drum, (long long)ps->n_orphan, (long long)ps->n_unterm,
                               names);
    else
        result = Py_BuildValue("(OOlllOLLLO)", Py_None, Py_None, ps->midi_type, ps->n_tracks, ps->division, notes,
                               (long long)ps->n_drum, (long long)ps->n_orphan, (long long)ps->n_unterm, names);
done:
    Py_XDECREF(notes);
    Py_XDECREF(names);
    free(ps->names);
    free(ps->name_len);
    free(ps->notes);
    free(ps);
    return result;
}

static PyMethodDef smf_methods[] = {
    {"parse", smf_parse, METH_VARARGS,
     "parse(buffer, max_notes, max_events[, with_tracks]) -> (err_code, err_detail, midi_type, n_tracks, division, "
     "notes_bytes, n_drum_notes, n_orphan_note_off, n_unterminated, names). Private: use musicflow.core.midi."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef smf_module = {
    PyModuleDef_HEAD_INIT, "_smf", "Bounds-checked Standard MIDI File note reader (private).", -1, smf_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__smf(void) { return PyModule_Create(&smf_module); }
