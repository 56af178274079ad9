package org.bnnconvert.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonTest {
    @Test
    public void parsesNestedValues() {
        Object value = Json.parse(" {\"a\": [1, -2.5e3, true, null], \"b\": {\"c\": \"x\"}} ");
        Map<?, ?> map = (Map<?, ?>) value;
        assertEquals(Arrays.<Object>asList(1.0, -2500.0, Boolean.TRUE, null), map.get("a"));
        assertEquals("x", ((Map<?, ?>) map.get("b")).get("c"));
    }

    @Test
    public void decodesEscapesAndUnicode() {
        assertEquals("q\"\\/\b\f\n\r\t\u00e9\ud83d\ude00", Json.parse(
                "\"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\""));
        assertEquals("\u00e9", Json.parse("\"\u00e9\""));
    }

    @Test
    public void numbersRoundTripExactlyAsDoubles() {
        // Python's json writes repr(float): the shortest text that round-trips.
        String[] texts = {"0.1", "0.485", "0.229", "0.875", "1e-07", "123.675", "-0.0", "5e-324"};
        for (String t : texts) {
            assertEquals(Double.doubleToRawLongBits(Double.parseDouble(t)),
                    Double.doubleToRawLongBits((Double) Json.parse(t)));
        }
    }

    @Test
    public void emptyContainers() {
        assertTrue(((Map<?, ?>) Json.parse("{}")).isEmpty());
        assertTrue(((List<?>) Json.parse("[ ]")).isEmpty());
        assertNull(Json.parse("null"));
    }

    @Test
    public void rejectsInvalidInput() {
        String[] bad = {"", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "\"abc", "tru", "{\"a\":1,\"a\":2}",
            "[1] x", "\"\\x\"", "\"\t\"", "{1:2}", "\"\\u12\""};
        for (String text : bad) {
            try {
                Json.parse(text);
                fail("accepted " + text);
            } catch (IllegalArgumentException expected) {
                assertTrue(expected.getMessage(), expected.getMessage().startsWith("invalid JSON at offset"));
            }
        }
    }

    @Test(expected = IllegalArgumentException.class)
    public void rejectsDeepNesting() {
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < 100; i++) {
            s.append('[');
        }
        Json.parse(s.toString());
    }
}
