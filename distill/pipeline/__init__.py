"""`mga run`: the recipe, the stage list, and the runner that records every stage in the manifest."""
