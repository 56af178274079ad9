package org.bnnconvert.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import org.junit.Test;

public class PreprocessingTest {
    private static Preprocessing unit(String color, String fit, double fraction) {
        int c = "gray".equals(color) ? 1 : 3;
        double[] mean = new double[c];
        double[] std = new double[c];
        java.util.Arrays.fill(std, 1.0);
        return new Preprocessing(color, fit, fraction, 1.0, mean, std);
    }

    private static byte[] rgb(int... values) {
        byte[] out = new byte[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = (byte) values[i];
        }
        return out;
    }

    @Test
    public void sameSizeIsAnExactCopy() {
        byte[] image = new byte[4 * 3 * 3];
        float[] expected = new float[image.length];
        for (int i = 0; i < image.length; i++) {
            image[i] = (byte) (i * 7 + 200);
            expected[i] = (i * 7 + 200) & 0xff;
        }
        assertArrayEquals(expected, unit("rgb", "crop", 1.0).apply(image, 4, 3, 3, 4), 0f);
    }

    @Test
    public void shrinkingAveragesWithTriangleWeights() {
        // 2x1 grey-level image -> 1x1: s = 2, r = 2, centre 1.0, both pixels weigh 0.75.
        byte[] image = rgb(10, 10, 10, 30, 30, 30);
        float[] out = unit("rgb", "stretch", 1.0).apply(image, 2, 1, 1, 1);
        assertArrayEquals(new float[] {20f, 20f, 20f}, out, 0f);
    }

    @Test
    public void enlargingInterpolatesWithClampedEdges() {
        // 2x1 -> 4x1 along x: centres 0.25, 0.75, 1.25, 1.75 (bilinear, half-pixel, clamped).
        byte[] image = rgb(0, 0, 0, 100, 100, 100);
        float[] out = unit("gray", "stretch", 1.0).apply(image, 2, 1, 1, 4);
        assertArrayEquals(new float[] {0f, 25f, 75f, 100f}, out, 1e-4f);
    }

    @Test
    public void colourOrders() {
        byte[] image = rgb(10, 20, 30);
        assertArrayEquals(new float[] {10, 20, 30}, unit("rgb", "crop", 1).apply(image, 1, 1, 1, 1), 0f);
        assertArrayEquals(new float[] {30, 20, 10}, unit("bgr", "crop", 1).apply(image, 1, 1, 1, 1), 0f);
        float gray = (float) ((0.299 * 10 + 0.587 * 20) + 0.114 * 30);
        assertArrayEquals(new float[] {gray}, unit("gray", "crop", 1).apply(image, 1, 1, 1, 1), 0f);
    }

    @Test
    public void normalisesPerChannel() {
        Preprocessing p = new Preprocessing("rgb", "crop", 1.0, 255.0,
                new double[] {0.485, 0.456, 0.406}, new double[] {0.229, 0.224, 0.225});
        float[] out = p.apply(rgb(255, 0, 128), 1, 1, 1, 1);
        assertEquals((float) ((255 / 255.0 - 0.485) / 0.229), out[0], 0f);
        assertEquals((float) ((0 / 255.0 - 0.456) / 0.224), out[1], 0f);
        assertEquals((float) ((128 / 255.0 - 0.406) / 0.225), out[2], 0f);
    }

    @Test
    public void cropRegionKeepsTheModelAspectAboutTheCentre() {
        Preprocessing crop = unit("rgb", "crop", 0.875);
        // Landscape 400x300 photo into a square input: the 300-pixel side rules.
        assertArrayEquals(new double[] {18.75, 68.75, 262.5, 262.5}, crop.cropRegion(300, 400, 224, 224), 0);
        // Portrait photo into a landscape input (h=10, w=20): the width rules.
        assertArrayEquals(new double[] {100 - 35, 0, 70, 140},
                unit("rgb", "crop", 1.0).cropRegion(200, 140, 10, 20), 0);
        assertArrayEquals(new double[] {0, 0, 300, 400},
                unit("rgb", "stretch", 1.0).cropRegion(300, 400, 224, 224), 0);
    }

    @Test
    public void argbToRgbDropsAlpha() {
        assertArrayEquals(rgb(0x12, 0x34, 0x56, 0xff, 0, 0x80),
                Preprocessing.argbToRgb(new int[] {0x80123456, 0xffff0080}));
    }

    @Test(expected = IllegalArgumentException.class)
    public void rejectsAWrongBufferSize() {
        unit("rgb", "crop", 1).apply(new byte[5], 1, 2, 1, 1);
    }
}
