package org.bnnconvert.demo.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads the two things the app needs from a {@code .tflite} flatbuffer without the TFLite
 * runtime: the {@code metadata} entries and the custom operator names.
 *
 * <p>Only the few tables involved are decoded, by their slots in TFLite's {@code schema.fbs}:
 * {@code Model} (operator_codes 1, buffers 4, metadata 6), {@code OperatorCode} (custom_code 1),
 * {@code Metadata} (name 0, buffer 1) and {@code Buffer} (data 0, offset 1, size 2; offset and
 * size locate data stored after the flatbuffer in models over 2 GB). Every offset is bounds
 * checked, so a corrupt file raises {@link IllegalArgumentException} rather than reading garbage.
 */
public final class TfliteModelFile {
    private final ByteBuffer buf;

    private TfliteModelFile(ByteBuffer model) {
        buf = model.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        buf.position(0);
    }

    /** Metadata entry name to its bytes, in file order. */
    public static Map<String, byte[]> metadata(ByteBuffer model) {
        TfliteModelFile f = new TfliteModelFile(model);
        int root = f.root();
        int buffers = f.vector(root, 4);
        int metadata = f.vector(root, 6);
        Map<String, byte[]> out = new LinkedHashMap<String, byte[]>();
        if (metadata == 0) {
            return out;
        }
        int buffersCount = buffers == 0 ? 0 : f.u32(buffers);
        for (int i = 0, n = f.u32(metadata); i < n; i++) {
            int entry = f.indirect(metadata + 4 + 4 * i);
            String name = f.string(entry, 0);
            long index = f.fieldU32(entry, 1);
            if (index >= buffersCount) {
                throw new IllegalArgumentException("metadata '" + name + "' names a missing buffer");
            }
            out.put(name, f.bufferData(f.indirect(buffers + 4 + 4 * (int) index)));
        }
        return out;
    }

    /** The custom operator codes of the model ("LceBconv2d", ...), in file order. */
    public static List<String> customOps(ByteBuffer model) {
        TfliteModelFile f = new TfliteModelFile(model);
        int root = f.root();
        int codes = f.vector(root, 1);
        List<String> out = new ArrayList<String>();
        if (codes == 0) {
            return out;
        }
        for (int i = 0, n = f.u32(codes); i < n; i++) {
            int code = f.indirect(codes + 4 + 4 * i);
            if (f.field(code, 1) != 0) {
                out.add(f.string(code, 1));
            }
        }
        return out;
    }

    private int root() {
        if (buf.limit() < 8) {
            throw new IllegalArgumentException("file of " + buf.limit() + " bytes is too short");
        }
        if (buf.get(4) != 'T' || buf.get(5) != 'F' || buf.get(6) != 'L' || buf.get(7) != '3') {
            throw new IllegalArgumentException("no TFL3 file identifier");
        }
        return indirect(0);
    }

    private void check(long pos, long size) {
        if (pos < 0 || size < 0 || pos + size > buf.limit()) {
            throw new IllegalArgumentException("offset " + pos + " out of the file");
        }
    }

    private int u32(int pos) {
        check(pos, 4);
        int v = buf.getInt(pos);
        if (v < 0) {
            throw new IllegalArgumentException("value at " + pos + " is too large");
        }
        return v;
    }

    private int indirect(int pos) {
        int target = pos + u32(pos);
        check(target, 4);
        return target;
    }

    /** Absolute position of a table's field, or 0 when the field is absent. */
    private int field(int table, int slot) {
        check(table, 4);
        int vtable = table - buf.getInt(table);
        check(vtable, 4);
        int vtableSize = buf.getShort(vtable) & 0xffff;
        int entry = 4 + 2 * slot;
        if (entry + 2 > vtableSize) {
            return 0;
        }
        check(vtable + entry, 2);
        int offset = buf.getShort(vtable + entry) & 0xffff;
        return offset == 0 ? 0 : table + offset;
    }

    /** Position of the length word of a vector field, or 0 when absent. */
    private int vector(int table, int slot) {
        int pos = field(table, slot);
        if (pos == 0) {
            return 0;
        }
        int vec = indirect(pos);
        check(vec + 4, 4L * u32(vec));
        return vec;
    }

    private long fieldU32(int table, int slot) {
        int pos = field(table, slot);
        if (pos == 0) {
            return 0;
        }
        check(pos, 4);
        return buf.getInt(pos) & 0xffffffffL;
    }

    private String string(int table, int slot) {
        int pos = field(table, slot);
        if (pos == 0) {
            return "";
        }
        int str = indirect(pos);
        int length = u32(str);
        check(str + 4, length);
        byte[] bytes = new byte[length];
        for (int i = 0; i < length; i++) {
            bytes[i] = buf.get(str + 4 + i);
        }
        return new String(bytes, StandardCharsets.UTF_8);
    }

    private byte[] bufferData(int buffer) {
        int data = field(buffer, 0);
        int start;
        long length;
        if (data != 0) {
            int vec = indirect(data);
            start = vec + 4;
            length = u32(vec);
        } else {
            long offset = fieldU64(buffer, 1);
            length = fieldU64(buffer, 2);
            if (offset > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("buffer offset " + offset + " is too large");
            }
            start = (int) offset;
        }
        check(start, length);
        byte[] out = new byte[(int) length];
        for (int i = 0; i < out.length; i++) {
            out[i] = buf.get(start + i);
        }
        return out;
    }

    private long fieldU64(int table, int slot) {
        int pos = field(table, slot);
        if (pos == 0) {
            return 0;
        }
        check(pos, 8);
        long v = buf.getLong(pos);
        if (v < 0) {
            throw new IllegalArgumentException("value at " + pos + " is too large");
        }
        return v;
    }
}
