package org.bnnconvert.demo.core;

import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.ByteBuffer;
import org.junit.Test;

public class TfliteModelFileTest {
    private static void assertRejected(byte[] bytes) {
        try {
            TfliteModelFile.metadata(ByteBuffer.wrap(bytes));
            fail("accepted a bad file");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), !e.getMessage().isEmpty());
        }
    }

    @Test
    public void rejectsShortAndForeignFiles() {
        assertRejected(new byte[] {1, 2});
        assertRejected(new byte[] {8, 0, 0, 0, 'M', '0', '0', '1', 0, 0, 0, 0});
    }

    @Test
    public void rejectsOffsetsPointingOutOfTheFile() {
        // Root offset 0x7fff0000 with the TFL3 identifier.
        assertRejected(new byte[] {0, 0, (byte) 0xff, 0x7f, 'T', 'F', 'L', '3'});
        // Root table at 8 whose vtable offset points before the file start.
        assertRejected(new byte[] {8, 0, 0, 0, 'T', 'F', 'L', '3', 100, 0, 0, 0});
    }
}
