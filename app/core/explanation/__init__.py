"""What a prediction is based on: the Grad-CAM heatmap and the segmented leukocytes."""
