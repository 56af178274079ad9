package org.bnnconvert.demo.core;

import java.util.Map;

/**
 * The type of a model input or output and, for int8, its affine parameters ({@code real = scale *
 * (q - zeroPoint)}), as {@code bnnconvert export --input-type/--output-type int8} records them in
 * the metadata. The app keeps its preprocessing in float and quantizes the result for an int8
 * input, and dequantizes an int8 output before top-k, exactly as bnnconvert's Python side does.
 */
public final class TensorQuantization {
    /** A float32 tensor: fed and read as floats. */
    public static final TensorQuantization FLOAT32 = new TensorQuantization("float32", 1.0, 0);

    /** "float32" or "int8". */
    public final String dtype;
    /** Real value of one integer step; 1 for float32. */
    public final double scale;
    /** The integer that stands for 0.0; 0 for float32. */
    public final int zeroPoint;

    public TensorQuantization(String dtype, double scale, int zeroPoint) {
        this.dtype = dtype;
        this.scale = scale;
        this.zeroPoint = zeroPoint;
    }

    /** Whether the tensor is int8 (fed and read as bytes). */
    public boolean isInt8() {
        return "int8".equals(dtype);
    }

    /**
     * Reads {@code dtype} and {@code quantization} ({@code {"scale", "zero_point"}} or null) of a
     * metadata {@code input}/{@code output} object.
     *
     * @param where "input" or "output", for messages
     * @throws MetadataException for a dtype the app cannot feed, or int8 without valid parameters
     */
    static TensorQuantization fromMetadata(Map<String, Object> tensor, String where)
            throws MetadataException {
        Object dtype = tensor.get("dtype");
        Object quantization = tensor.get("quantization");
        if ("float32".equals(dtype)) {
            return FLOAT32;
        }
        if (!"int8".equals(dtype)) {
            throw new MetadataException(
                    "Expected a float32 or int8 " + where + " tensor, got " + dtype
                            + "; re-export the model with --" + where + "-type float32 or int8.");
        }
        if (!(quantization instanceof Map)) {
            throw new MetadataException(
                    "Expected a scale and zero point for the int8 " + where + " in the metadata,"
                            + " got none; re-export the model with a current bnnconvert.");
        }
        Map<?, ?> q = (Map<?, ?>) quantization;
        Object scale = q.get("scale");
        Object zero = q.get("zero_point");
        if (!(scale instanceof Double) || !((Double) scale > 0) || ((Double) scale).isInfinite()) {
            throw new MetadataException(
                    "Expected a positive " + where + " scale in the metadata, got " + scale
                            + "; re-export the model with a current bnnconvert.");
        }
        if (!(zero instanceof Double)
                || (Double) zero != Math.rint((Double) zero)
                || (Double) zero < Byte.MIN_VALUE
                || (Double) zero > Byte.MAX_VALUE) {
            throw new MetadataException(
                    "Expected an " + where + " zero point in [-128, 127] in the metadata, got "
                            + zero + "; re-export the model with a current bnnconvert.");
        }
        return new TensorQuantization("int8", (Double) scale, (int) (double) (Double) zero);
    }

    /**
     * Quantizes preprocessed floats for an int8 input: {@code round(v / scale) + zeroPoint}, rounded
     * half away from zero and saturated to [-128, 127] (bnnconvert's {@code io_quant}, TFLite's
     * rounding).
     */
    public byte[] quantize(float[] values) {
        byte[] out = new byte[values.length];
        for (int i = 0; i < values.length; i++) {
            double q = roundHalfAway((double) values[i] / scale) + zeroPoint;
            out[i] = (byte) Math.max(Byte.MIN_VALUE, Math.min(Byte.MAX_VALUE, q));
        }
        return out;
    }

    /** Real values of an int8 output: {@code scale * (q - zeroPoint)}, as float32. */
    public float[] dequantize(byte[] values) {
        float[] out = new float[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = (float) (scale * (values[i] - zeroPoint));
        }
        return out;
    }

    private static double roundHalfAway(double x) {
        return Math.signum(x) * Math.floor(Math.abs(x) + 0.5);
    }
}
