package org.bnnconvert.demo.core;

import static org.junit.Assert.assertEquals;

import java.util.List;
import org.junit.Test;

public class TopKTest {
    private static ModelMetadata metadata(String scores, String labels, int classes) throws Exception {
        return ModelMetadataTest.parse(ModelMetadataTest.sample()
                .replace("\"probabilities\"", "\"" + scores + "\"")
                .replace("\"classes\": 3", "\"classes\": " + classes)
                .replace("[\"cat\", \"dog\", \"fox\"]", labels));
    }

    @Test
    public void bestFirstWithLabelsAndStableTies() throws Exception {
        ModelMetadata m = metadata("probabilities", "[\"cat\", \"dog\", \"fox\"]", 3);
        List<TopK.Prediction> top = TopK.of(new float[] {0.25f, 0.5f, 0.25f}, 5, m);
        assertEquals(3, top.size());
        assertEquals(1, top.get(0).index);
        assertEquals("dog", top.get(0).label);
        assertEquals(0, top.get(1).index);
        assertEquals(2, top.get(2).index);
        assertEquals(0.25f, top.get(2).score, 0f);
    }

    @Test
    public void logitsBecomeProbabilities() throws Exception {
        ModelMetadata m = metadata("logits", "null", 3);
        List<TopK.Prediction> top = TopK.of(new float[] {0f, (float) Math.log(3), 0f}, 1, m);
        assertEquals(1, top.size());
        assertEquals("class 1", top.get(0).label);
        assertEquals(0.6f, top.get(0).score, 1e-6f);
    }

    @Test
    public void softmaxIsStableForLargeLogits() {
        float[] p = TopK.softmax(new float[] {1000f, 1000f});
        assertEquals(0.5f, p[0], 0f);
        assertEquals(0.5f, p[1], 0f);
    }
}
