"""Qt-free state of the front ends' forms (glue style): what the Initialize and Backward panels bind to."""
