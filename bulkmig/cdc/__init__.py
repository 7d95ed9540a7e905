"""Change data capture: the change batch format shared by capture and replay."""
