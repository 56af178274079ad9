package org.bnnconvert.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.ByteBuffer;
import java.util.Arrays;
import org.junit.Test;

public class ModelMetadataTest {
    /** Metadata in the layout bnnconvert's Python side writes (schema version 1). */
    static String sample() {
        return "{\n"
                + " \"schema_version\": 1,\n"
                + " \"model\": {\"name\": \"pets\", \"version\": \"2\", \"description\": \"d\", \"author\": \"\"},\n"
                + " \"producer\": {\"name\": \"bnnconvert\", \"version\": \"0.1.0\", \"target\": \"arm64\"},\n"
                + " \"input\": {\"index\": 0, \"tensor\": \"in\", \"shape\": [1, 224, 160, 3],"
                + " \"dtype\": \"float32\", \"layout\": \"NHWC\", \"height\": 224, \"width\": 160,"
                + " \"channels\": 3},\n"
                + " \"preprocessing\": {\"color\": \"bgr\", \"fit\": \"crop\", \"crop_fraction\": 0.875,"
                + " \"resample\": \"triangle\", \"scale\": 255.0, \"mean\": [0.485, 0.456, 0.406],"
                + " \"std\": [0.229, 0.224, 0.225]},\n"
                + " \"output\": {\"index\": 0, \"tensor\": \"out\", \"shape\": [1, 3], \"dtype\": \"float32\","
                + " \"classes\": 3, \"scores\": \"probabilities\"},\n"
                + " \"labels\": [\"cat\", \"dog\", \"fox\"]\n"
                + "}";
    }

    static ModelMetadata parse(String json) throws MetadataException {
        return ModelMetadata.parse(json);
    }

    @Test
    public void readsEveryField() throws Exception {
        ModelMetadata m = parse(sample());
        assertEquals(1, m.schemaVersion);
        assertEquals("pets", m.name);
        assertEquals("2", m.version);
        assertEquals("arm64", m.target);
        assertEquals("0.1.0", m.producerVersion);
        assertEquals(224, m.height);
        assertEquals(160, m.width);
        assertEquals(3, m.channels);
        assertEquals("float32", m.inputDtype);
        assertEquals("bgr", m.preprocessing.color);
        assertEquals("crop", m.preprocessing.fit);
        assertEquals(0.875, m.preprocessing.cropFraction, 0);
        assertEquals(255.0, m.preprocessing.scale, 0);
        assertArrayEquals(new double[] {0.485, 0.456, 0.406}, m.preprocessing.mean, 0);
        assertArrayEquals(new double[] {0.229, 0.224, 0.225}, m.preprocessing.std, 0);
        assertEquals(0, m.outputIndex);
        assertEquals(3, m.classes);
        assertEquals("probabilities", m.scores);
        assertEquals(Arrays.asList("cat", "dog", "fox"), m.labels);
        assertEquals("fox", m.label(2));
    }

    @Test
    public void labelsAndPreprocessingAreOptional() throws Exception {
        ModelMetadata m = parse(sample()
                .replace("[\"cat\", \"dog\", \"fox\"]", "null")
                .replaceAll("\"preprocessing\": \\{[^}]*\\}", "\"preprocessing\": null"));
        assertNull(m.preprocessing);
        assertTrue(m.labels.isEmpty());
        assertEquals("class 2", m.label(2));
    }

    @Test
    public void theClassifierOutputIsTheOneTheMetadataNames() throws Exception {
        // A model with a feature map as output 0 and the classifier as output 1.
        String two = sample().replace(
                " \"output\": {\"index\": 0,",
                " \"outputs\": [{\"index\": 0, \"kind\": \"tensor\", \"shape\": [1, 8, 8, 32]}],\n"
                        + " \"output\": {\"index\": 1,");
        assertTrue(two, two.contains("\"output\": {\"index\": 1,"));
        assertEquals(1, parse(two).outputIndex);
        // Metadata from before several outputs were described has no index: output 0.
        assertEquals(0, parse(sample().replace("\"output\": {\"index\": 0, ", "\"output\": {")).outputIndex);
        assertRejected(sample().replace("\"output\": {\"index\": 0,", "\"output\": {\"index\": -1,"),
                "'output.index'");
    }

    private static void assertRejected(String json, String messagePart) {
        try {
            parse(json);
            fail("accepted: " + json);
        } catch (MetadataException e) {
            assertTrue(e.getMessage(), e.getMessage().contains(messagePart));
        }
    }

    @Test
    public void rejectsWhatItCannotUse() {
        assertRejected("not json", "not valid JSON");
        assertRejected("[]", "'metadata' in the model's bnnconvert metadata to be an object");
        assertRejected(sample().replace("\"schema_version\": 1", "\"schema_version\": 2"), "Update the app");
        assertRejected(sample().replace("\"classes\": 3", "\"classes\": 4"), "3 labels for 4 classes");
        assertRejected(
                sample().replace("\"classes\": 3,", "\"kind\": \"tensor\","),
                "Expected a classifier output, got the tensor output 'out'");
        assertRejected(sample().replace("\"triangle\"", "\"lanczos\""), "resampling 'lanczos'");
        assertRejected(sample().replace("\"bgr\"", "\"gray\""), "'preprocessing.mean/std'");
        assertRejected(sample().replace("\"layout\": \"NHWC\",", ""), "NHWC image input");
        assertRejected(sample().replace("\"height\": 224", "\"height\": 22.5"), "'height'");
        assertRejected(sample().replace("0.875", "1.5"), "crop_fraction");
        assertRejected(sample().replace("[0.229, 0.224, 0.225]", "[0.229, 0, 0.225]"), "non-zero");
    }

    @Test
    public void explainsAModelWithoutMetadataOrNotAModel() {
        try {
            ModelMetadata.fromModel(ByteBuffer.wrap(new byte[] {1, 2, 3}));
            fail("accepted garbage");
        } catch (MetadataException e) {
            assertTrue(e.getMessage(), e.getMessage().startsWith("Not a TFLite model file"));
        }
    }
}
