package org.bnnconvert.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import org.junit.Test;

public class TensorQuantizationTest {
    /** The sample metadata with an int8 input and output, as `export --input-type int8` writes. */
    static String int8Sample() {
        return ModelMetadataTest.sample()
                .replace(
                        "\"dtype\": \"float32\", \"layout\"",
                        "\"dtype\": \"int8\", \"quantization\": {\"scale\": 0.003921568859368563,"
                                + " \"zero_point\": -128}, \"layout\"")
                .replace(
                        "\"dtype\": \"float32\",\n \"classes\"".replace("\n ", " "),
                        "\"dtype\": \"int8\", \"quantization\": {\"scale\": 0.00390625,"
                                + " \"zero_point\": -128}, \"classes\"");
    }

    @Test
    public void metadataGivesEachEdgeItsParameters() throws Exception {
        ModelMetadata m = ModelMetadata.parse(int8Sample());
        assertEquals("int8", m.inputDtype);
        assertTrue(m.inputQuantization.isInt8());
        assertEquals(0.003921568859368563, m.inputQuantization.scale, 0);
        assertEquals(-128, m.inputQuantization.zeroPoint);
        assertTrue(m.outputQuantization.isInt8());
        assertEquals(0.00390625, m.outputQuantization.scale, 0);
        assertEquals(-128, m.outputQuantization.zeroPoint);
    }

    @Test
    public void floatEdgesNeedNoParameters() throws Exception {
        ModelMetadata m = ModelMetadata.parse(ModelMetadataTest.sample());
        assertSame(TensorQuantization.FLOAT32, m.inputQuantization);
        assertSame(TensorQuantization.FLOAT32, m.outputQuantization);
        assertFalse(m.outputQuantization.isInt8());
    }

    @Test
    public void quantizesRoundingHalfAwayFromZeroAndSaturates() {
        TensorQuantization q = new TensorQuantization("int8", 0.5, -10);
        // v / 0.5 = 0, 0.5, 1.5, -0.5, -1.5, 2.6, then far out of range both ways
        float[] values = {0f, 0.25f, 0.75f, -0.25f, -0.75f, 1.3f, 1000f, -1000f};
        assertArrayEquals(
                new byte[] {-10, -9, -8, -11, -12, -7, 127, -128}, q.quantize(values));
    }

    @Test
    public void pixelsOfAUnitRangeInputLandOnTheirSteps() {
        // A [0, 1] input as LCE's converter quantizes it: scale (float32) 1/255, zero point
        // -128. That scale is a hair above 1/255, so 0.5 / scale = 127.49999... rounds down.
        TensorQuantization q = new TensorQuantization("int8", 0.003921568859368563, -128);
        float[] values = {0f, 1f / 255, 0.5f, 1f};
        assertArrayEquals(new byte[] {-128, -127, -1, 127}, q.quantize(values));
    }

    @Test
    public void dequantizesToRealValues() {
        TensorQuantization q = new TensorQuantization("int8", 0.00390625, -128);
        assertArrayEquals(
                new float[] {0f, 0.5f, 0.99609375f}, q.dequantize(new byte[] {-128, 0, 127}), 0f);
    }

    private static void assertRejected(String json, String messagePart) {
        try {
            ModelMetadata.parse(json);
            fail("accepted: " + json);
        } catch (MetadataException e) {
            assertTrue(e.getMessage(), e.getMessage().contains(messagePart));
        }
    }

    @Test
    public void rejectsInt8WithoutUsableParameters() {
        String sample = int8Sample();
        assertRejected(
                sample.replace("\"quantization\": {\"scale\": 0.003921568859368563,"
                        + " \"zero_point\": -128}, ", ""),
                "Expected a scale and zero point for the int8 input");
        assertRejected(sample.replace("\"scale\": 0.00390625", "\"scale\": 0"),
                "Expected a positive output scale");
        assertRejected(sample.replace("\"zero_point\": -128}, \"layout\"",
                "\"zero_point\": 300}, \"layout\""), "zero point in [-128, 127]");
        assertRejected(ModelMetadataTest.sample().replace("\"dtype\": \"float32\", \"layout\"",
                "\"dtype\": \"uint8\", \"layout\""), "Expected a float32 or int8 input tensor");
    }
}
