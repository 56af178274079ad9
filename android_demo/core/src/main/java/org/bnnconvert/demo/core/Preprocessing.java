package org.bnnconvert.demo.core;

/**
 * Turns an RGB photo into a model's float32 NHWC input tensor, exactly as the Python reference
 * {@code bnnconvert.preprocessing.preprocess} does.
 *
 * <p>Every step uses IEEE-754 double arithmetic in the same order as the Python code (see
 * {@code docs/metadata.md}, "Preprocessing algorithm"), and rounds to float once at the end, so
 * both give bit-identical tensors. Do not reorder an expression here without changing Python.
 */
public final class Preprocessing {
    public final String color; // "rgb", "bgr" or "gray"
    public final String fit; // "crop" or "stretch"
    public final double cropFraction;
    public final double scale;
    public final double[] mean; // one per channel
    public final double[] std; // one per channel

    public Preprocessing(
            String color, String fit, double cropFraction, double scale, double[] mean, double[] std) {
        this.color = color;
        this.fit = fit;
        this.cropFraction = cropFraction;
        this.scale = scale;
        this.mean = mean.clone();
        this.std = std.clone();
    }

    /** Channels of the tensor: 1 for gray, 3 otherwise. */
    public int channels() {
        return "gray".equals(color) ? 1 : 3;
    }

    /**
     * The source region {top, left, height, width} that is resampled to {@code height x width}.
     */
    public double[] cropRegion(int srcHeight, int srcWidth, int height, int width) {
        double f = cropFraction;
        double regionH;
        double regionW;
        if ("stretch".equals(fit)) {
            regionH = f * srcHeight;
            regionW = f * srcWidth;
        } else if ((long) srcWidth * height >= (long) srcHeight * width) {
            regionH = f * srcHeight;
            regionW = regionH * width / height;
        } else {
            regionW = f * srcWidth;
            regionH = regionW * height / width;
        }
        return new double[] {
            (srcHeight - regionH) / 2, (srcWidth - regionW) / 2, regionH, regionW
        };
    }

    /**
     * Preprocesses an interleaved RGB image ({@code rgb.length == 3 * srcWidth * srcHeight}, row
     * major, one unsigned byte per channel) into {@code height * width * channels()} floats, NHWC
     * order without the batch dimension.
     */
    public float[] apply(byte[] rgb, int srcWidth, int srcHeight, int height, int width) {
        if (srcWidth <= 0 || srcHeight <= 0 || rgb.length != 3 * srcWidth * srcHeight) {
            throw new IllegalArgumentException(
                    "expected " + srcWidth + "x" + srcHeight + " RGB bytes, got " + rgb.length);
        }
        int channels = channels();
        double[] region = cropRegion(srcHeight, srcWidth, height, width);
        Taps ys = new Taps(region[0], region[2], height, srcHeight);
        Taps xs = new Taps(region[1], region[3], width, srcWidth);
        int firstRow = ys.minIndex();
        int lastRow = ys.maxIndex();

        // Horizontal pass over the rows the vertical pass reads: rows[(y - firstRow)][x][c].
        double[] rows = new double[(lastRow - firstRow + 1) * width * channels];
        double[] pixel = new double[channels];
        double[] acc = new double[channels];
        for (int y = firstRow; y <= lastRow; y++) {
            for (int x = 0; x < width; x++) {
                java.util.Arrays.fill(acc, 0.0);
                double norm = 0.0;
                for (int t = 0; t < xs.count[x]; t++) {
                    double w = xs.weight[x][t];
                    sourcePixel(rgb, (y * srcWidth + xs.index[x][t]) * 3, pixel);
                    for (int c = 0; c < channels; c++) {
                        acc[c] = acc[c] + w * pixel[c];
                    }
                    norm = norm + w;
                }
                int base = ((y - firstRow) * width + x) * channels;
                for (int c = 0; c < channels; c++) {
                    rows[base + c] = acc[c] / norm;
                }
            }
        }

        float[] out = new float[height * width * channels];
        for (int y = 0; y < height; y++) {
            for (int x = 0; x < width; x++) {
                java.util.Arrays.fill(acc, 0.0);
                double norm = 0.0;
                for (int t = 0; t < ys.count[y]; t++) {
                    double w = ys.weight[y][t];
                    int base = ((ys.index[y][t] - firstRow) * width + x) * channels;
                    for (int c = 0; c < channels; c++) {
                        acc[c] = acc[c] + w * rows[base + c];
                    }
                    norm = norm + w;
                }
                int o = (y * width + x) * channels;
                for (int c = 0; c < channels; c++) {
                    double v = acc[c] / norm;
                    out[o + c] = (float) ((v / scale - mean[c]) / std[c]);
                }
            }
        }
        return out;
    }

    /** Converts Android-style ARGB ints (alpha ignored) to interleaved RGB bytes. */
    public static byte[] argbToRgb(int[] argb) {
        byte[] rgb = new byte[argb.length * 3];
        for (int i = 0; i < argb.length; i++) {
            rgb[3 * i] = (byte) (argb[i] >> 16);
            rgb[3 * i + 1] = (byte) (argb[i] >> 8);
            rgb[3 * i + 2] = (byte) argb[i];
        }
        return rgb;
    }

    private void sourcePixel(byte[] rgb, int offset, double[] out) {
        double r = rgb[offset] & 0xff;
        double g = rgb[offset + 1] & 0xff;
        double b = rgb[offset + 2] & 0xff;
        if ("gray".equals(color)) {
            out[0] = (0.299 * r + 0.587 * g) + 0.114 * b;
        } else if ("bgr".equals(color)) {
            out[0] = b;
            out[1] = g;
            out[2] = r;
        } else {
            out[0] = r;
            out[1] = g;
            out[2] = b;
        }
    }

    /** Triangle-filter taps along one axis: source indices and weights per output index. */
    static final class Taps {
        final int[][] index;
        final double[][] weight;
        final int[] count;

        Taps(double start, double length, int nOut, int nSrc) {
            index = new int[nOut][];
            weight = new double[nOut][];
            count = new int[nOut];
            double s = length / nOut;
            double r = Math.max(s, 1.0);
            for (int i = 0; i < nOut; i++) {
                double c = start + (i + 0.5) * s;
                int k0 = Math.max(0, (int) Math.floor(c - r));
                int k1 = Math.min(nSrc - 1, (int) Math.floor(c + r));
                int n = k1 - k0 + 1;
                index[i] = new int[n];
                weight[i] = new double[n];
                count[i] = n;
                for (int t = 0; t < n; t++) {
                    int k = k0 + t;
                    index[i][t] = k;
                    weight[i][t] = Math.max(0.0, 1.0 - Math.abs((k + 0.5) - c) / r);
                }
            }
        }

        int minIndex() {
            int m = Integer.MAX_VALUE;
            for (int[] row : index) {
                m = Math.min(m, row[0]);
            }
            return m;
        }

        int maxIndex() {
            int m = Integer.MIN_VALUE;
            for (int[] row : index) {
                m = Math.max(m, row[row.length - 1]);
            }
            return m;
        }
    }
}
