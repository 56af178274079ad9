package org.bnnconvert.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Assume;
import org.junit.Test;

/**
 * Golden tests against files the Python package writes (tests/test_android_core.py).
 *
 * <p>{@code BNNCONVERT_GOLDEN_DIR} names a directory with {@code cases.txt} (one case per line)
 * and per case: {@code model.tflite} (exported with metadata), {@code image.rgb} + {@code
 * image.txt} ("width height"), {@code input.f32} (Python's preprocessed tensor, little-endian
 * float32), {@code expected.txt} (metadata values, key=value), {@code labels.txt}, and {@code
 * output.f32} + {@code top5.txt} (the LCE interpreter's scores for that input and the expected
 * top-5 class indices). Without the variable the tests are skipped; with it, a missing file fails.
 */
public class GoldenTest {
    private static Path goldenDir() {
        String dir = System.getenv("BNNCONVERT_GOLDEN_DIR");
        Assume.assumeTrue("BNNCONVERT_GOLDEN_DIR is not set", dir != null && !dir.isEmpty());
        Path path = Paths.get(dir);
        assertTrue("golden directory " + path + " does not exist", Files.isDirectory(path));
        return path;
    }

    private static List<Path> cases() throws IOException {
        Path dir = goldenDir();
        Path list = dir.resolve("cases.txt");
        assertTrue("missing " + list, Files.isRegularFile(list));
        List<Path> out = new ArrayList<Path>();
        for (String line : Files.readAllLines(list, StandardCharsets.UTF_8)) {
            if (!line.trim().isEmpty()) {
                out.add(dir.resolve(line.trim()));
            }
        }
        assertFalse("no golden cases in " + list, out.isEmpty());
        return out;
    }

    private static byte[] read(Path path) throws IOException {
        assertTrue("missing golden file " + path, Files.isRegularFile(path));
        return Files.readAllBytes(path);
    }

    private static float[] floats(Path path) throws IOException {
        ByteBuffer buf = ByteBuffer.wrap(read(path)).order(ByteOrder.LITTLE_ENDIAN);
        float[] out = new float[buf.remaining() / 4];
        buf.asFloatBuffer().get(out);
        return out;
    }

    private static Map<String, String> properties(Path path) throws IOException {
        Map<String, String> out = new LinkedHashMap<String, String>();
        for (String line : new String(read(path), StandardCharsets.UTF_8).split("\n")) {
            int eq = line.indexOf('=');
            if (eq > 0) {
                out.put(line.substring(0, eq), line.substring(eq + 1));
            }
        }
        return out;
    }

    private static double[] doubles(String commaSeparated) {
        String[] parts = commaSeparated.split(",");
        double[] out = new double[parts.length];
        for (int i = 0; i < parts.length; i++) {
            out[i] = Double.parseDouble(parts[i]);
        }
        return out;
    }

    private static ModelMetadata metadata(Path dir) throws Exception {
        return ModelMetadata.fromModel(ByteBuffer.wrap(read(dir.resolve("model.tflite"))));
    }

    @Test
    public void metadataParsesToThePythonValues() throws Exception {
        for (Path dir : cases()) {
            ModelMetadata m = metadata(dir);
            Map<String, String> e = properties(dir.resolve("expected.txt"));
            String where = dir.getFileName().toString();
            assertEquals(where, e.get("name"), m.name);
            assertEquals(where, e.get("version"), m.version);
            assertEquals(where, e.get("target"), m.target);
            assertEquals(where, e.get("producer_version"), m.producerVersion);
            assertEquals(where, Integer.parseInt(e.get("height")), m.height);
            assertEquals(where, Integer.parseInt(e.get("width")), m.width);
            assertEquals(where, Integer.parseInt(e.get("channels")), m.channels);
            assertEquals(where, e.get("input_dtype"), m.inputDtype);
            assertEquals(where, Integer.parseInt(e.get("output_index")), m.outputIndex);
            assertEquals(where, Integer.parseInt(e.get("classes")), m.classes);
            assertEquals(where, e.get("scores"), m.scores);
            assertEquals(where, e.get("color"), m.preprocessing.color);
            assertEquals(where, e.get("fit"), m.preprocessing.fit);
            // Exact: JSON numbers written by Python parse back to the identical doubles.
            assertEquals(where, Double.parseDouble(e.get("crop_fraction")), m.preprocessing.cropFraction, 0);
            assertEquals(where, Double.parseDouble(e.get("scale")), m.preprocessing.scale, 0);
            assertArrayEquals(where, doubles(e.get("mean")), m.preprocessing.mean, 0);
            assertArrayEquals(where, doubles(e.get("std")), m.preprocessing.std, 0);
            List<String> labels = Files.readAllLines(dir.resolve("labels.txt"), StandardCharsets.UTF_8);
            assertEquals(where, labels, m.labels);
            List<String> custom = TfliteModelFile.customOps(ByteBuffer.wrap(read(dir.resolve("model.tflite"))));
            assertTrue(where + ": no LCE ops in " + custom, custom.contains("LceBconv2d"));
            assertEquals(where, new ArrayList<String>(), LceOps.unsupported(custom));
        }
    }

    @Test
    public void preprocessingMatchesPythonBitForBit() throws Exception {
        for (Path dir : cases()) {
            ModelMetadata m = metadata(dir);
            String[] size = new String(read(dir.resolve("image.txt")), StandardCharsets.US_ASCII)
                    .trim().split("\\s+");
            int width = Integer.parseInt(size[0]);
            int height = Integer.parseInt(size[1]);
            float[] actual = m.preprocessing.apply(
                    read(dir.resolve("image.rgb")), width, height, m.height, m.width);
            float[] expected = floats(dir.resolve("input.f32"));
            assertEquals(dir + ": tensor length", expected.length, actual.length);
            for (int i = 0; i < expected.length; i++) {
                if (Float.floatToRawIntBits(expected[i]) != Float.floatToRawIntBits(actual[i])) {
                    int c = i % m.channels;
                    int x = (i / m.channels) % m.width;
                    int y = i / m.channels / m.width;
                    throw new AssertionError(dir.getFileName() + ": element (y=" + y + ", x=" + x
                            + ", c=" + c + ") is " + actual[i] + " in Java, " + expected[i] + " in Python");
                }
            }
        }
    }

    @Test
    public void topFiveMatchesPython() throws Exception {
        for (Path dir : cases()) {
            ModelMetadata m = metadata(dir);
            List<TopK.Prediction> top = TopK.of(floats(dir.resolve("output.f32")), 5, m);
            String[] expected = new String(read(dir.resolve("top5.txt")), StandardCharsets.US_ASCII)
                    .trim().split("\\s+");
            assertEquals(dir.toString(), expected.length, top.size());
            for (int i = 0; i < expected.length; i++) {
                assertEquals(dir + " rank " + i, Integer.parseInt(expected[i]), top.get(i).index);
            }
        }
    }
}
